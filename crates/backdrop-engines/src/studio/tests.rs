use super::*;
use backdrop_core::{EngineOptions, RunControl, SceneChoice};
use image::{GrayImage, Rgb, RgbImage, Rgba, RgbaImage};
use std::sync::Mutex;

/// A 160x120 canvas with an opaque block (the "product") standing at columns 60..100,
/// rows 30..80, like a box on a table.
fn cutout_canvas() -> RgbaImage {
    RgbaImage::from_fn(160, 120, |x, y| {
        if (60..100).contains(&x) && (30..80).contains(&y) {
            Rgba([200, 40, 40, 255])
        } else {
            Rgba([0, 0, 0, 0])
        }
    })
}

fn mask_for(canvas: &RgbaImage) -> GrayImage {
    GrayImage::from_fn(canvas.width(), canvas.height(), |x, y| {
        image::Luma([255 - canvas.get_pixel(x, y)[3]])
    })
}

struct Job<'a> {
    kind: JobKind,
    canvas: &'a RgbaImage,
    mask: GrayImage,
    options: EngineOptions,
    scene: Option<&'a str>,
    prompt: Option<&'a str>,
    seed: u64,
    n: u32,
}

impl<'a> Job<'a> {
    fn background(canvas: &'a RgbaImage, scene: &'a str) -> Self {
        Job {
            kind: JobKind::Background,
            canvas,
            mask: mask_for(canvas),
            options: EngineOptions::default(),
            scene: Some(scene),
            prompt: None,
            seed: 42,
            n: 1,
        }
    }

    fn run(&self) -> Result<EngineOutput, EngineError> {
        self.run_with(&(), &CancelToken::new())
    }

    fn run_with(
        &self,
        progress: &dyn Progress,
        cancel: &CancelToken,
    ) -> Result<EngineOutput, EngineError> {
        let input = EngineInput {
            kind: self.kind,
            canvas: self.canvas,
            mask: &self.mask,
            reference: None,
            prompt: self.prompt,
            negative_prompt: None,
            scene: self.scene,
            seed: self.seed,
            n: self.n,
            options: &self.options,
        };
        StudioEngine::default().generate(&input, RunControl::new(progress, cancel))
    }

    fn image(&self) -> RgbImage {
        let mut out = self.run().expect("studio renders");
        assert_eq!(out.images.len(), 1);
        out.images.remove(0)
    }
}

fn luma(p: &Rgb<u8>) -> f32 {
    0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2])
}

/// Texture at the scale of a few pixels: mean absolute second difference of 4x4 block
/// means (luma) in rows `rows`. Block means average most grain away, and
/// second differences cancel smooth light falloff and gradients, which are locally
/// linear; what is left is surface texture.
fn texture_strength(img: &RgbImage, rows: std::ops::Range<u32>) -> f32 {
    let w = img.width() / 4;
    let (top, h) = (rows.start / 4, rows.len() as u32 / 4);
    let block = |bx: u32, by: u32| -> f32 {
        let mut sum = 0.0;
        for y in (top + by) * 4..(top + by) * 4 + 4 {
            for x in bx * 4..bx * 4 + 4 {
                sum += luma(img.get_pixel(x, y));
            }
        }
        sum / 16.0
    };
    let mut total = 0.0;
    let mut n = 0.0;
    for by in 1..h - 1 {
        for bx in 1..w - 1 {
            let b = 2.0 * block(bx, by);
            total += (block(bx - 1, by) + block(bx + 1, by) - b).abs()
                + (block(bx, by - 1) + block(bx, by + 1) - b).abs();
            n += 2.0;
        }
    }
    total / n
}

/// Mean absolute difference of 4x4 block means: per-pixel grain mostly averages out,
/// so what is left is a difference in light, layout and palette.
fn block_mean_abs_diff(a: &RgbImage, b: &RgbImage) -> f64 {
    let blocks = |img: &RgbImage| -> Vec<f64> {
        let (w, h) = (img.width() / 4, img.height() / 4);
        let mut out = vec![0.0; (w * h * 3) as usize];
        for (x, y, p) in img.enumerate_pixels() {
            if x / 4 < w && y / 4 < h {
                for c in 0..3 {
                    out[(((y / 4) * w + x / 4) * 3) as usize + c] += f64::from(p[c]) / 16.0;
                }
            }
        }
        out
    };
    let (a, b) = (blocks(a), blocks(b));
    a.iter().zip(&b).map(|(x, y)| (x - y).abs()).sum::<f64>() / a.len() as f64
}

/// Mean colour over a rectangle, as 0..255 floats.
fn mean_rgb(img: &RgbImage, xs: std::ops::Range<u32>, ys: std::ops::Range<u32>) -> [f32; 3] {
    let mut acc = [0.0f64; 3];
    let mut n = 0.0;
    for y in ys {
        for x in xs.clone() {
            let p = img.get_pixel(x, y);
            for c in 0..3 {
                acc[c] += f64::from(p[c]);
            }
            n += 1.0;
        }
    }
    acc.map(|v| (v / n) as f32)
}

fn luma_std(img: &RgbImage) -> f32 {
    let values: Vec<f32> = img.pixels().map(luma).collect();
    let mean = values.iter().sum::<f32>() / values.len() as f32;
    (values.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / values.len() as f32).sqrt()
}

#[test]
fn every_scene_renders_at_a_non_square_size() {
    let canvas = cutout_canvas();
    for template in SCENES {
        let mut job = Job::background(&canvas, template.id);
        job.n = 2;
        let out = job.run().unwrap_or_else(|e| panic!("{}: {e}", template.id));
        assert_eq!(out.images.len(), 2, "{}", template.id);
        for img in &out.images {
            assert_eq!(img.dimensions(), (160, 120), "{}", template.id);
            // A backdrop has light and shade, not one flat colour.
            assert!(luma_std(img) > 1.0, "{} is flat", template.id);
        }
        assert!(out.notes.contains(&("scene".into(), template.id.into())));
    }
}

#[test]
fn scenes_look_like_their_descriptions() {
    let canvas = RgbaImage::new(192, 128);
    let render = |id: &str| Job::background(&canvas, id).image();
    let whole = |img: &RgbImage| mean_rgb(img, 0..192, 0..128);
    let l = |c: [f32; 3]| 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2];

    let white = whole(&render("white-seamless"));
    assert!(l(white) > 225.0, "white seamless is bright: {white:?}");
    let dark = whole(&render("dark-spotlight"));
    assert!(l(dark) < 70.0, "dark spotlight is dark: {dark:?}");

    // The spotlight makes the area behind the product far brighter than the corners.
    let spot = render("dark-spotlight");
    let centre = l(mean_rgb(&spot, 76..116, 30..60));
    let corner = l(mean_rgb(&spot, 0..16, 0..16));
    assert!(centre > corner + 30.0, "spot {centre} vs corner {corner}");

    let yellow = whole(&render("sunny-yellow"));
    assert!(yellow[0] > 200.0 && yellow[1] > 170.0 && yellow[2] < 140.0, "{yellow:?}");
    let pink = whole(&render("pastel-pink"));
    assert!(pink[0] > pink[1] + 15.0 && pink[2] > pink[1], "{pink:?}");
    let blue = whole(&render("pastel-blue"));
    assert!(blue[2] > blue[0] + 15.0, "{blue:?}");
    let mint = whole(&render("pastel-mint"));
    assert!(mint[1] > mint[0] + 10.0 && mint[1] > mint[2], "{mint:?}");
    let lavender = whole(&render("lavender-haze"));
    assert!(lavender[2] > lavender[1] + 15.0 && lavender[0] > lavender[1], "{lavender:?}");
    let cream = whole(&render("warm-paper"));
    assert!(cream[0] > cream[2] + 15.0 && l(cream) > 190.0, "{cream:?}");

    // Sunset: amber top, peach floor, both warm.
    let sunset = render("sunset-gradient");
    let top = mean_rgb(&sunset, 0..192, 0..12);
    let bottom = mean_rgb(&sunset, 0..192, 116..128);
    assert!(top[0] > top[2] + 80.0 && bottom[0] > bottom[2] + 40.0, "{top:?} {bottom:?}");
    assert!(l(bottom) > l(top), "peach floor is lighter than the amber top");

    // Wood: a pale wall above a brown table whose grain varies.
    let wood = render("wood-tabletop");
    let pale = mean_rgb(&wood, 0..192, 0..30);
    let table = mean_rgb(&wood, 0..192, 100..128);
    assert!(l(pale) > l(table) + 40.0, "wall {pale:?} table {table:?}");
    assert!(table[0] > table[1] + 25.0 && table[1] > table[2] + 15.0, "brown {table:?}");

    let concrete = render("concrete");
    let white_sweep = render("white-seamless");
    let wall = |img: &RgbImage| texture_strength(img, 0..40);
    let floor = |img: &RgbImage| texture_strength(img, 100..128);
    // Texture: mottled concrete and grained paper on the wall, wood on the table; the
    // white sweep, smooth, is the reference.
    let smooth_wall = wall(&white_sweep);
    assert!(wall(&concrete) > 4.0 * smooth_wall, "concrete {} vs {smooth_wall}", wall(&concrete));
    let paper = render("warm-paper");
    assert!(wall(&paper) > 2.0 * smooth_wall, "paper {} vs {smooth_wall}", wall(&paper));
    let smooth_floor = floor(&white_sweep);
    assert!(floor(&wood) > 8.0 * smooth_floor, "wood {} vs {smooth_floor}", floor(&wood));
    assert!(floor(&concrete) > 4.0 * smooth_floor);
    let concrete_mean = whole(&concrete);
    assert!(concrete_mean[2] > concrete_mean[0], "concrete is cool: {concrete_mean:?}");

    // The vignette: a light centre fading to darker corners.
    let vignette = render("soft-vignette");
    let centre = l(mean_rgb(&vignette, 80..112, 48..80));
    let corner = l(mean_rgb(&vignette, 0..12, 0..12));
    assert!(centre > corner + 25.0, "vignette centre {centre} corner {corner}");
}

#[test]
fn same_seed_gives_identical_bytes_on_any_thread_count() {
    let canvas = cutout_canvas();
    for id in ["concrete", "wood-tabletop", "lavender-haze", "white-seamless"] {
        let job = Job::background(&canvas, id);
        let a = job.image();
        let b = job.image();
        assert_eq!(a.as_raw(), b.as_raw(), "{id}");
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("pool");
        let single = pool.install(|| job.image());
        assert_eq!(a.as_raw(), single.as_raw(), "{id} on one thread");
    }
}

#[test]
fn image_i_equals_image_zero_of_seed_plus_i() {
    let canvas = cutout_canvas();
    let mut job = Job::background(&canvas, "studio-floor");
    job.n = 3;
    let run = job.run().expect("run");
    job.n = 1;
    job.seed = 44;
    assert_eq!(run.images[2], job.image());
}

/// Six seed pairs per scene must differ by more than 1.5 levels in 4x4 block means.
/// Grain alone cannot do that: it is uniform of amplitude at most about 4 levels
/// (concrete), so a 16-pixel block mean has a standard deviation under 0.6 levels and two
/// independent ones differ by about 0.7 on average; on the light scenes (amplitude 1.5)
/// by under 0.3. Passing needs the light, horizon, tilt or palette to move. Measured
/// minimum across these pairs: just over 2 levels (white seamless, the least colourful).
#[test]
fn different_seeds_give_visibly_different_variants() {
    let canvas = cutout_canvas();
    for template in SCENES {
        let mut job = Job::background(&canvas, template.id);
        for seed in [1u64, 3, 5, 7, 9, 11] {
            job.seed = seed;
            let a = job.image();
            job.seed = seed + 1;
            let b = job.image();
            let d = block_mean_abs_diff(&a, &b);
            assert!(
                d > 1.5,
                "{}: seeds {seed} and {} differ by only {d:.2}",
                template.id,
                seed + 1
            );
        }
    }
}

#[test]
fn shadow_darkens_the_floor_under_the_object_and_nothing_far_away() {
    let canvas = cutout_canvas();
    for id in ["white-seamless", "studio-floor", "dark-spotlight"] {
        let job = Job::background(&canvas, id);
        let lit = job.image();
        let mut plain = Job::background(&canvas, id);
        plain.options.no_shadow = true;
        let unshaded = plain.image();

        // Just below the object's bottom edge (row 79), across its middle.
        let shaded_floor = mean_rgb(&lit, 65..95, 80..84);
        let plain_floor = mean_rgb(&unshaded, 65..95, 80..84);
        let drop =
            luma(&Rgb(plain_floor.map(|v| v as u8))) - luma(&Rgb(shaded_floor.map(|v| v as u8)));
        assert!(drop > plain_floor[1] * 0.15, "{id}: contact shadow only {drop} darker");

        // The far top corners are untouched, to the byte.
        for (x, y) in [(0, 0), (159, 0), (5, 3), (150, 4)] {
            assert_eq!(lit.get_pixel(x, y), unshaded.get_pixel(x, y), "{id} at {x},{y}");
        }
    }
}

#[test]
fn no_shadow_is_just_the_backdrop() {
    let canvas = cutout_canvas();
    let mut with_object = Job::background(&canvas, "light-grey-sweep");
    with_object.options.no_shadow = true;
    let empty = RgbaImage::new(160, 120);
    let without_object = Job::background(&empty, "light-grey-sweep");
    assert_eq!(with_object.image(), without_object.image());
}

#[test]
fn cancel_before_start_returns_canceled() {
    let canvas = cutout_canvas();
    let job = Job::background(&canvas, "concrete");
    let cancel = CancelToken::new();
    cancel.cancel();
    let calls = Mutex::new(0);
    let progress = |_: StepProgress| *calls.lock().expect("lock") += 1;
    assert_eq!(job.run_with(&progress, &cancel).err(), Some(EngineError::Canceled));
    assert_eq!(*calls.lock().expect("lock"), 0);
}

#[test]
fn progress_is_reported_after_each_image() {
    let canvas = cutout_canvas();
    let mut job = Job::background(&canvas, "pastel-blue");
    job.n = 3;
    let seen = Mutex::new(Vec::new());
    let progress = |p: StepProgress| seen.lock().expect("lock").push(p);
    job.run_with(&progress, &CancelToken::new()).expect("run");
    let seen = seen.into_inner().expect("lock");
    let expected: Vec<StepProgress> =
        (0..3).map(|i| StepProgress { image: i, images: 3, step: 1, steps: 1 }).collect();
    assert_eq!(seen, expected);
}

#[test]
fn notes_report_the_scene_and_why_for_a_prompt_only_input() {
    let canvas = cutout_canvas();
    let mut job = Job::background(&canvas, "");
    job.scene = None;
    job.prompt = Some("warm paper");
    let out = job.run().expect("run");
    let expected = SceneTemplate::choose(None, Some("warm paper"));
    assert_eq!(
        expected,
        Some(SceneChoice { id: "warm-paper", reason: "prompt words: warm, paper".into() })
    );
    assert_eq!(
        out.notes,
        vec![
            ("scene".to_string(), "warm-paper".to_string()),
            ("scene_reason".to_string(), "prompt words: warm, paper".to_string()),
        ]
    );
    // And the render is the warm paper scene, not just the label.
    assert_eq!(out.images[0], Job::background(&canvas, "warm-paper").image());
}

#[test]
fn an_unknown_scene_is_unsupported_with_the_reason() {
    let canvas = cutout_canvas();
    let job = Job::background(&canvas, "moon-surface");
    match job.run() {
        Err(EngineError::Unsupported { engine, reason }) => {
            assert_eq!(engine, "studio");
            assert!(reason.contains("moon-surface") && reason.contains("white-seamless"));
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

/// A 60x40 photo placed at (30, 20) in a 120x80 expansion canvas.
fn expansion_canvas(colour: impl Fn(u32) -> [u8; 3]) -> RgbaImage {
    RgbaImage::from_fn(120, 80, |x, y| {
        if (30..90).contains(&x) && (20..60).contains(&y) {
            let [r, g, b] = colour(x - 30);
            Rgba([r, g, b, 255])
        } else {
            Rgba([0, 0, 0, 0])
        }
    })
}

fn expansion_job(canvas: &RgbaImage) -> Job<'_> {
    Job {
        kind: JobKind::Expansion,
        canvas,
        mask: mask_for(canvas),
        options: EngineOptions::default(),
        scene: None,
        prompt: None,
        seed: 7,
        n: 1,
    }
}

#[test]
fn expansion_continues_the_photos_border_colour() {
    let canvas = expansion_canvas(|_| [180, 120, 60]);
    let img = expansion_job(&canvas).image();
    for (x, y, p) in img.enumerate_pixels() {
        let inside = (30..90).contains(&x) && (20..60).contains(&y);
        if inside {
            assert_eq!(p.0, [180, 120, 60], "known pixel changed at {x},{y}");
        } else {
            for (c, want) in p.0.iter().zip([180u8, 120, 60]) {
                assert!(c.abs_diff(want) <= 6, "{x},{y}: {p:?}");
            }
        }
    }
}

#[test]
fn expansion_follows_the_nearest_border() {
    // Left half of the photo red, right half blue: the new area left of the photo
    // continues red, the area right of it blue.
    let canvas = expansion_canvas(|x| if x < 30 { [220, 40, 40] } else { [40, 60, 220] });
    let img = expansion_job(&canvas).image();
    let left = mean_rgb(&img, 0..24, 30..50);
    let right = mean_rgb(&img, 96..120, 30..50);
    assert!(left[0] > 150.0 && left[2] < 110.0, "left continues red: {left:?}");
    assert!(right[2] > 150.0 && right[0] < 110.0, "right continues blue: {right:?}");
    // No shadow and no scene in an expansion: the area under the photo keeps photo colours.
    let below = mean_rgb(&img, 40..50, 62..70);
    assert!(below[0] > 150.0, "below the red half stays red: {below:?}");
}
