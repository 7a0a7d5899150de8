//! The `[segmentation]` configuration section: named salient-object segmentation models
//! and the default one. Each model's input size and normalisation come from its layout
//! family, and any of them can be set per model.
//!
//! ```toml
//! [segmentation]
//! default_model = "birefnet"        # default: $BACKDROP_SEGMENTATION_MODEL, else u2netp
//!
//! [segmentation.models.birefnet]
//! path = "/models/birefnet-general.onnx"  # an .onnx file or a folder with model.onnx, or:
//! # repo = "owner/name"                   # a Hugging Face repo (cache, or `models pull`)
//! # file = "onnx/model.onnx"              # the network inside the repo or folder
//! layout = "birefnet"                     # u2net (default), isnet, birefnet
//! size = 1024                             # input side; default: the network's, else the layout's
//! mean = [0.485, 0.456, 0.406]            # default: the layout's
//! std = [0.229, 0.224, 0.225]
//! ```
//!
//! The runtime is the diffusion engine's (`[diffusion.runtime]`): one ONNX Runtime per
//! process.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A network family: how its input is prepared and its output read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// U²-Net and U²-Net-p (rembg's `u2net`, `u2netp`, `u2net_human_seg`, `silueta`):
    /// 320 x 320, ImageNet normalisation, first output a probability map.
    #[default]
    U2net,
    /// IS-Net (DIS, rembg's `isnet-general-use`): 1024 x 1024, mean 0.5, std 1, first
    /// output a probability map.
    Isnet,
    /// BiRefNet: 1024 x 1024, ImageNet normalisation, first output logits.
    Birefnet,
}

impl Layout {
    /// The layout's defaults.
    pub fn preset(self) -> Preprocess {
        const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
        const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
        match self {
            Layout::U2net => {
                Preprocess { size: 320, mean: IMAGENET_MEAN, std: IMAGENET_STD, logits: false }
            }
            Layout::Isnet => {
                Preprocess { size: 1024, mean: [0.5; 3], std: [1.0; 3], logits: false }
            }
            Layout::Birefnet => {
                Preprocess { size: 1024, mean: IMAGENET_MEAN, std: IMAGENET_STD, logits: true }
            }
        }
    }

    /// A guess from a file name, for a model named only by a path
    /// (`BACKDROP_SEGMENTATION_MODEL`).
    pub fn guess(name: &str) -> Layout {
        let name = name.to_ascii_lowercase();
        if name.contains("birefnet") {
            Layout::Birefnet
        } else if name.contains("isnet") {
            Layout::Isnet
        } else {
            Layout::U2net
        }
    }
}

/// How a photo becomes the network's input, and its output a probability.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Preprocess {
    /// Input side (the photo is resized to a square, as the networks were trained).
    pub size: u32,
    /// Per-channel mean, after scaling the photo so its brightest value is 1.
    pub mean: [f32; 3],
    /// Per-channel standard deviation.
    pub std: [f32; 3],
    /// Whether the first output is logits (a sigmoid makes it a probability).
    pub logits: bool,
}

/// One named segmentation model.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
// Every field is optional: a missing one takes `Default`.
#[serde(default, deny_unknown_fields)]
pub struct SegmentModelEntry {
    /// An `.onnx` file, or a folder holding `file` (default `model.onnx`).
    pub path: Option<PathBuf>,
    /// A Hugging Face repo id holding the network.
    pub repo: Option<String>,
    /// The repo revision (default `main`).
    pub revision: Option<String>,
    /// The network inside a folder or repo (default `model.onnx`).
    pub file: Option<String>,
    /// The network family (default `u2net`).
    pub layout: Layout,
    /// Input side, overriding the network's fixed size or the layout's.
    pub size: Option<u32>,
    /// Normalisation mean, overriding the layout's.
    pub mean: Option<[f32; 3]>,
    /// Normalisation standard deviation, overriding the layout's.
    pub std: Option<[f32; 3]>,
    /// One line for `backdrop models list`.
    pub description: Option<String>,
}

impl SegmentModelEntry {
    /// The preprocessing: the layout's, with this entry's overrides.
    pub fn preprocess(&self) -> Preprocess {
        let preset = self.layout.preset();
        Preprocess {
            size: self.size.unwrap_or(preset.size),
            mean: self.mean.unwrap_or(preset.mean),
            std: self.std.unwrap_or(preset.std),
            logits: preset.logits,
        }
    }
}

/// `[segmentation]`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentationConfig {
    /// Models by id.
    #[serde(default)]
    pub models: BTreeMap<String, SegmentModelEntry>,
    /// The model used when a job names none.
    #[serde(default)]
    pub default_model: Option<String>,
}

/// Smallest and largest accepted input side.
const SIZE_RANGE: std::ops::RangeInclusive<u32> = 32..=2048;

impl SegmentationConfig {
    /// Checks names and values, so that a bad file is refused at start-up.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(id) = &self.default_model {
            if !self.models.contains_key(id) && id != super::store::BUNDLED_MODEL {
                return Err(format!(
                    "[segmentation] default_model '{id}' is neither among [segmentation.models] \
                     nor the bundled '{}'",
                    super::store::BUNDLED_MODEL
                ));
            }
        }
        for (id, entry) in &self.models {
            if entry.path.is_none() && entry.repo.is_none() {
                return Err(format!("[segmentation.models.{id}] needs `path` or `repo`"));
            }
            if let Some(size) = entry.size {
                if !SIZE_RANGE.contains(&size) {
                    return Err(format!(
                        "[segmentation.models.{id}] size {size} is outside {}..={}",
                        SIZE_RANGE.start(),
                        SIZE_RANGE.end()
                    ));
                }
            }
            if entry.std.is_some_and(|s| s.iter().any(|&v| !(v.is_finite() && v > 0.0))) {
                return Err(format!("[segmentation.models.{id}] std values must be positive"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_give_size_and_normalisation_and_entries_override_them() {
        assert_eq!(Layout::U2net.preset().size, 320);
        assert!(Layout::Birefnet.preset().logits && !Layout::Isnet.preset().logits);
        assert_eq!(Layout::guess("BiRefNet-general.onnx"), Layout::Birefnet);
        assert_eq!(Layout::guess("isnet-general-use.onnx"), Layout::Isnet);
        assert_eq!(Layout::guess("u2netp.onnx"), Layout::U2net);
        let entry =
            SegmentModelEntry { layout: Layout::Isnet, size: Some(512), ..Default::default() };
        let pre = entry.preprocess();
        assert_eq!((pre.size, pre.mean, pre.std), (512, [0.5; 3], [1.0; 3]));
    }

    #[test]
    fn validate_names_the_broken_entry() {
        let mut config =
            SegmentationConfig { default_model: Some("x".into()), ..Default::default() };
        assert!(config.validate().expect_err("unknown").contains("default_model 'x'"));
        config.default_model = Some("u2netp".into());
        assert_eq!(config.validate(), Ok(()));
        config.models.insert("x".into(), SegmentModelEntry::default());
        assert!(config.validate().expect_err("no source").contains("needs `path` or `repo`"));
        config.models.insert(
            "x".into(),
            SegmentModelEntry { path: Some("/m.onnx".into()), size: Some(9), ..Default::default() },
        );
        assert!(config.validate().expect_err("size").contains("size 9"));
    }
}
