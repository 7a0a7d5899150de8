//! The catalogue of scene templates and how a prompt picks one.
//!
//! The templates are what the `studio` engine renders and what `GET /v1/scenes` and
//! `backdrop scenes` list; vendor surfaces map their scene ids onto these. Each has a
//! stable `id`, a display `name`, a one-line `description` and the `keywords` that
//! select it from a prompt.
//!
//! # Picking a scene from a prompt
//! When a job has a prompt but no scene id, [`SceneTemplate::choose`] lowercases the
//! prompt, splits it into words (letters and digits), and scores each template by how
//! many of its keywords occur as words; the highest score wins, ties going to the
//! template listed first. A prompt matching no keyword gets [`DEFAULT_SCENE`]. The
//! choice and the words that made it are returned as a [`SceneChoice`] so every
//! surface can report it.

use serde::Serialize;

/// One scene template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SceneTemplate {
    /// Stable id, kebab case.
    pub id: &'static str,
    /// Display name.
    pub name: &'static str,
    /// One line saying what it looks like.
    pub description: &'static str,
    /// Prompt words that select it.
    pub keywords: &'static [&'static str],
}

/// The scene used when a prompt names none of the keywords.
pub const DEFAULT_SCENE: &str = "white-seamless";

/// Every scene template, in listing order.
pub const SCENES: &[SceneTemplate] = &[
    SceneTemplate {
        id: "white-seamless",
        name: "White seamless",
        description:
            "Pure white paper sweep with a soft contact shadow, the classic catalogue shot.",
        keywords: &[
            "white",
            "clean",
            "catalog",
            "catalogue",
            "ecommerce",
            "minimal",
            "simple",
            "plain",
        ],
    },
    SceneTemplate {
        id: "light-grey-sweep",
        name: "Light grey sweep",
        description: "Neutral light grey sweep that curves from floor to wall.",
        keywords: &["grey", "gray", "neutral", "silver", "sweep"],
    },
    SceneTemplate {
        id: "warm-paper",
        name: "Warm paper",
        description: "Cream-coloured paper backdrop with a faint grain and warm light.",
        keywords: &["warm", "cream", "beige", "paper", "ivory", "cozy", "cosy", "sand"],
    },
    SceneTemplate {
        id: "pastel-pink",
        name: "Pastel pink",
        description: "Soft pink backdrop with a slightly deeper floor.",
        keywords: &["pink", "rose", "blush", "romantic", "valentine"],
    },
    SceneTemplate {
        id: "pastel-blue",
        name: "Pastel blue",
        description: "Airy powder-blue backdrop, light and fresh.",
        keywords: &["blue", "sky", "fresh", "air", "airy", "water", "ocean", "sea"],
    },
    SceneTemplate {
        id: "pastel-mint",
        name: "Pastel mint",
        description: "Mint green backdrop for a natural, spring look.",
        keywords: &["green", "mint", "spring", "nature", "natural", "eco", "leaf", "garden"],
    },
    SceneTemplate {
        id: "lavender-haze",
        name: "Lavender haze",
        description: "Lilac-to-violet haze, dreamy and soft.",
        keywords: &["purple", "lavender", "lilac", "violet", "dreamy", "dream"],
    },
    SceneTemplate {
        id: "sunset-gradient",
        name: "Sunset gradient",
        description: "Vertical gradient from peach at the floor to coral and amber above.",
        keywords: &["sunset", "orange", "peach", "coral", "summer", "gradient", "golden", "amber"],
    },
    SceneTemplate {
        id: "dark-spotlight",
        name: "Dark spotlight",
        description: "Charcoal backdrop lit by one soft spotlight behind the product.",
        keywords: &[
            "dark",
            "black",
            "night",
            "luxury",
            "premium",
            "dramatic",
            "spotlight",
            "moody",
        ],
    },
    SceneTemplate {
        id: "studio-floor",
        name: "Studio floor",
        description: "A warm grey wall meeting a lighter floor at a soft horizon.",
        keywords: &["floor", "table", "horizon", "room", "studio", "wall", "interior"],
    },
    SceneTemplate {
        id: "soft-vignette",
        name: "Soft vignette",
        description: "Light centre fading to a darker edge, drawing the eye to the product.",
        keywords: &["vignette", "portrait", "focus", "classic", "vintage"],
    },
    SceneTemplate {
        id: "concrete",
        name: "Concrete",
        description: "Cool textured concrete with mottled light, for an urban, industrial look.",
        keywords: &["concrete", "stone", "urban", "industrial", "cement", "texture", "rough"],
    },
    SceneTemplate {
        id: "wood-tabletop",
        name: "Wood tabletop",
        description: "Honey-coloured wooden tabletop under a pale wall.",
        keywords: &["wood", "wooden", "oak", "rustic", "kitchen", "desk", "brown"],
    },
    SceneTemplate {
        id: "sunny-yellow",
        name: "Sunny yellow",
        description: "Bright lemon-yellow backdrop, cheerful and bold.",
        keywords: &["yellow", "lemon", "sunny", "bright", "cheerful", "happy"],
    },
];

/// Which scene a job uses and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SceneChoice {
    /// The scene id.
    pub id: &'static str,
    /// Why: `scene id given`, `prompt words: warm, paper`, or `no prompt word matched; default`.
    pub reason: String,
}

impl SceneTemplate {
    /// The template with this id.
    pub fn find(id: &str) -> Option<&'static SceneTemplate> {
        SCENES.iter().find(|s| s.id == id)
    }

    /// The scene for a job: the given id when there is one, else the one the prompt's
    /// words pick (see the module doc). An unknown id is `None`.
    pub fn choose(scene: Option<&str>, prompt: Option<&str>) -> Option<SceneChoice> {
        if let Some(id) = scene.map(str::trim).filter(|s| !s.is_empty()) {
            return SceneTemplate::find(id)
                .map(|t| SceneChoice { id: t.id, reason: "scene id given".into() });
        }
        let lowered = prompt.unwrap_or_default().to_lowercase();
        let words: Vec<&str> =
            lowered.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect();
        let mut best: Option<(&SceneTemplate, Vec<&str>)> = None;
        for template in SCENES {
            let hits: Vec<&str> =
                template.keywords.iter().copied().filter(|k| words.contains(k)).collect();
            if !hits.is_empty() && best.as_ref().is_none_or(|(_, b)| hits.len() > b.len()) {
                best = Some((template, hits));
            }
        }
        Some(match best {
            Some((template, hits)) => SceneChoice {
                id: template.id,
                reason: format!("prompt words: {}", hits.join(", ")),
            },
            None => SceneChoice {
                id: DEFAULT_SCENE,
                reason: "no prompt word matched a scene; default".into(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_is_large_and_well_formed() {
        assert!(SCENES.len() >= 12);
        for (i, s) in SCENES.iter().enumerate() {
            assert!(SCENES[..i].iter().all(|o| o.id != s.id), "duplicate id {}", s.id);
            assert!(!s.description.is_empty() && !s.keywords.is_empty());
        }
        assert!(SceneTemplate::find(DEFAULT_SCENE).is_some());
    }

    #[test]
    fn prompt_words_pick_a_scene_and_say_why() {
        let c = SceneTemplate::choose(None, Some("A bottle on warm cream PAPER")).expect("choice");
        assert_eq!(c.id, "warm-paper");
        assert_eq!(c.reason, "prompt words: warm, cream, paper");
        let c = SceneTemplate::choose(None, Some("dramatic black luxury")).expect("choice");
        assert_eq!(c.id, "dark-spotlight");
        let c = SceneTemplate::choose(None, Some("a cat")).expect("choice");
        assert_eq!(c.id, DEFAULT_SCENE);
        // "whitening" is not the word "white".
        let c =
            SceneTemplate::choose(None, Some("whitening paste on a wooden desk")).expect("choice");
        assert_eq!(c.id, "wood-tabletop");
    }

    #[test]
    fn a_given_scene_wins_over_the_prompt() {
        let c = SceneTemplate::choose(Some("concrete"), Some("pink")).expect("choice");
        assert_eq!(c.id, "concrete");
        assert!(SceneTemplate::choose(Some("nope"), None).is_none());
    }
}
