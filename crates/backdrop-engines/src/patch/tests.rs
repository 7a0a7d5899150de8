use super::*;
use backdrop_core::{EngineOptions, JobKind, Progress, RunControl};
use image::{Luma, Rgb, Rgba};
use std::sync::Mutex;

/// Runs the engine with the given tuning.
fn run_with(
    params: PatchParams,
    canvas: &RgbaImage,
    mask: &GrayImage,
    seed: u64,
    n: u32,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<EngineOutput, EngineError> {
    let options = EngineOptions::default();
    let input =
        EngineInput { seed, n, ..EngineInput::new(JobKind::Expansion, canvas, mask, &options) };
    PatchEngine::new(params).generate(&input, RunControl::new(progress, cancel))
}

fn fill(canvas: &RgbaImage, mask: &GrayImage, seed: u64) -> RgbImage {
    fill_with(PatchParams::default(), canvas, mask, seed)
}

/// A canvas showing `truth` where `hole` is false (opaque) and transparent black where it
/// is true, with the matching mask.
fn punch(truth: &RgbImage, hole: impl Fn(u32, u32) -> bool) -> (RgbaImage, GrayImage) {
    let (w, h) = truth.dimensions();
    let canvas = RgbaImage::from_fn(w, h, |x, y| {
        if hole(x, y) {
            Rgba([0, 0, 0, 0])
        } else {
            let p = truth.get_pixel(x, y).0;
            Rgba([p[0], p[1], p[2], 255])
        }
    });
    let mask = GrayImage::from_fn(w, h, |x, y| Luma([if hole(x, y) { 255 } else { 0 }]));
    (canvas, mask)
}

/// Mean absolute difference per channel over the pixels where `region` is true.
fn mean_abs_error(a: &RgbImage, b: &RgbImage, region: impl Fn(u32, u32) -> bool) -> f64 {
    let (mut sum, mut n) = (0u64, 0u64);
    for (x, y, p) in a.enumerate_pixels() {
        if region(x, y) {
            let q = b.get_pixel(x, y);
            for c in 0..3 {
                sum += u64::from(p.0[c].abs_diff(q.0[c]));
            }
            n += 3;
        }
    }
    sum as f64 / n.max(1) as f64
}

/// Deterministic pseudo-random colours, so fills have many equally good choices.
fn noise(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let v =
            (x.wrapping_mul(73_856_093) ^ y.wrapping_mul(19_349_663)).wrapping_mul(2_654_435_761);
        Rgb([(v >> 24) as u8, (v >> 16) as u8, (v >> 8) as u8])
    })
}

fn checker(w: u32, h: u32, period: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        if (x / period + y / period) % 2 == 0 {
            Rgb([220, 40, 40])
        } else {
            Rgb([30, 60, 200])
        }
    })
}

#[test]
fn fills_a_hole_in_a_periodic_texture() {
    for truth in [
        checker(64, 64, 4),
        RgbImage::from_fn(64, 64, |x, _| Rgb([(x % 6 * 40) as u8, 90, 255 - (x % 6 * 40) as u8])),
    ] {
        let hole = |x: u32, y: u32| (24..40).contains(&x) && (24..40).contains(&y);
        let (canvas, mask) = punch(&truth, hole);
        let out = fill(&canvas, &mask, 3);
        let err = mean_abs_error(&out, &truth, hole);
        assert!(err < 6.0, "mean abs error in the hole {err}");
        // Known pixels come through untouched.
        assert_eq!(mean_abs_error(&out, &truth, |x, y| !hole(x, y)), 0.0);
    }
}

#[test]
fn expansion_continues_a_gradient_and_stripes() {
    // Colour varies across x only, so continuing it up and down is well defined.
    let gradient = RgbImage::from_fn(72, 72, |x, _| Rgb([(x * 3) as u8, 100, 250 - (x * 3) as u8]));
    let stripes =
        RgbImage::from_fn(
            72,
            72,
            |x, _| {
                if x % 8 < 3 {
                    Rgb([240, 230, 30])
                } else {
                    Rgb([20, 90, 40])
                }
            },
        );
    for truth in [gradient, stripes] {
        let border = |_: u32, y: u32| !(20..52).contains(&y);
        let (canvas, mask) = punch(&truth, border);
        let out = fill(&canvas, &mask, 11);
        let err = mean_abs_error(&out, &truth, border);
        assert!(err < 6.0, "mean abs error in the new border {err}");
    }
    // Expanding on all four sides: the new ring keeps the checker's two colours and its
    // contrast instead of fading to their average.
    let truth = checker(80, 80, 5);
    let ring = |x: u32, y: u32| !((20..60).contains(&x) && (20..60).contains(&y));
    let (canvas, mask) = punch(&truth, ring);
    let out = fill(&canvas, &mask, 5);
    let mid_tones = out
        .enumerate_pixels()
        .filter(|(x, y, p)| ring(*x, *y) && p.0[0] > 80 && p.0[0] < 170)
        .count();
    let ring_pixels = (80 * 80 - 40 * 40) as f64;
    assert!((mid_tones as f64) < 0.1 * ring_pixels, "{mid_tones} blended pixels");
}

#[test]
fn same_seed_same_bytes_whatever_the_thread_count() {
    let truth = noise(96, 80);
    let (canvas, mask) = punch(&truth, |x, y| !((24..72).contains(&x) && (20..60).contains(&y)));
    let in_pool = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("thread pool")
            .install(|| fill(&canvas, &mask, 42))
    };
    let one = in_pool(1);
    assert_eq!(one, in_pool(3));
    assert_eq!(one, fill(&canvas, &mask, 42));
}

#[test]
fn different_seeds_give_different_fills() {
    let truth = noise(64, 64);
    let hole = |x: u32, y: u32| (16..48).contains(&x) && (16..48).contains(&y);
    let (canvas, mask) = punch(&truth, hole);
    let a = fill(&canvas, &mask, 1);
    let b = fill(&canvas, &mask, 2);
    let differing = a.pixels().zip(b.pixels()).filter(|(p, q)| p != q).count();
    assert!(differing > 100, "only {differing} pixels differ");
    // Image i of a run is image 0 of a run seeded seed + i.
    let two = run_with(PatchParams::default(), &canvas, &mask, 1, 2, &(), &CancelToken::new())
        .expect("two images");
    assert_eq!(two.images[0], a);
    assert_eq!(two.images[1], b);
}

#[test]
fn cancel_returns_canceled() {
    let truth = noise(64, 64);
    let (canvas, mask) = punch(&truth, |x, _| x >= 40);
    let token = CancelToken::new();
    token.cancel();
    assert_eq!(
        run_with(PatchParams::default(), &canvas, &mask, 1, 1, &(), &token).err(),
        Some(EngineError::Canceled)
    );
    // Canceled during the run: stops at the next step boundary.
    let token = CancelToken::new();
    let steps = Mutex::new(0u32);
    let cancel_after_two = |p: StepProgress| {
        if let Ok(mut seen) = steps.lock() {
            *seen = p.step;
        }
        if p.step == 2 {
            token.cancel();
        }
    };
    let result = run_with(PatchParams::default(), &canvas, &mask, 1, 1, &cancel_after_two, &token);
    assert_eq!(result.err(), Some(EngineError::Canceled));
    assert_eq!(*steps.lock().expect("lock"), 2);
}

#[test]
fn progress_is_monotone_and_ends_at_the_step_count() {
    let truth = noise(80, 64);
    let (canvas, mask) = punch(&truth, |x, y| x < 16 || y >= 50);
    let seen = Mutex::new(Vec::new());
    let record = |p: StepProgress| seen.lock().expect("lock").push(p);
    let out = run_with(PatchParams::default(), &canvas, &mask, 9, 2, &record, &CancelToken::new())
        .expect("two images");
    assert_eq!(out.images.len(), 2);
    let seen = seen.into_inner().expect("lock");
    let steps = seen[0].steps;
    assert!(steps >= 1);
    assert_eq!(seen.len() as u32, 2 * steps);
    for (k, p) in seen.iter().enumerate() {
        let k = k as u32;
        assert_eq!(*p, StepProgress { image: k / steps, images: 2, step: k % steps + 1, steps });
    }
    let fractions: Vec<f64> = seen.iter().map(StepProgress::fraction).collect();
    assert!(fractions.windows(2).all(|f| f[0] < f[1]));
    assert_eq!(fractions.last().copied(), Some(1.0));
}

#[test]
fn degenerate_inputs_do_not_panic() {
    let shapes = [(1, 1), (2, 2), (3, 3), (8, 8), (1, 40), (40, 1), (5, 17), (64, 3)];
    for (w, h) in shapes {
        let truth = noise(w, h);
        for hole in [
            Box::new(|x: u32, _: u32| x > 0) as Box<dyn Fn(u32, u32) -> bool>,
            Box::new(|x: u32, y: u32| (x + y) % 3 == 0),
            Box::new(|x: u32, y: u32| x != w / 2 || y != h / 2),
            Box::new(|x: u32, y: u32| x < w / 2 && y < h / 2),
        ] {
            let (canvas, mask) = punch(&truth, &hole);
            match run_with(PatchParams::default(), &canvas, &mask, 1, 1, &(), &CancelToken::new()) {
                Ok(out) => {
                    assert_eq!(out.images[0].dimensions(), (w, h));
                    assert_eq!(mean_abs_error(&out.images[0], &truth, |x, y| !hole(x, y)), 0.0);
                }
                // Only a canvas with nothing known may be refused.
                Err(e) => {
                    assert!((0..w).all(|x| (0..h).all(|y| hole(x, y))), "{w}x{h}: {e}");
                }
            }
        }
    }
    // An empty canvas makes empty images.
    let empty = run_with(
        PatchParams::default(),
        &RgbaImage::new(0, 0),
        &GrayImage::new(0, 0),
        1,
        2,
        &(),
        &CancelToken::new(),
    )
    .expect("empty canvas");
    assert!(empty.images.iter().all(|i| i.dimensions() == (0, 0)));
}

#[test]
fn nothing_known_is_a_clear_failure() {
    let canvas = RgbaImage::from_pixel(16, 16, Rgba([10, 20, 30, 255]));
    let mask = GrayImage::from_pixel(16, 16, Luma([255]));
    let err =
        run_with(PatchParams::default(), &canvas, &mask, 1, 1, &(), &CancelToken::new()).err();
    match err {
        Some(EngineError::Failed { engine: "patch", reason }) => {
            assert!(reason.contains("no pixel is both opaque and outside the mask"), "{reason}")
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    let small_mask = GrayImage::new(8, 8);
    assert!(matches!(
        run_with(PatchParams::default(), &canvas, &small_mask, 1, 1, &(), &CancelToken::new()),
        Err(EngineError::Failed { .. })
    ));
}

#[test]
fn empty_mask_copies_the_canvas() {
    let canvas = RgbaImage::from_fn(9, 7, |x, y| Rgba([x as u8 * 20, y as u8 * 30, 7, 255]));
    let mask = GrayImage::new(9, 7);
    let out = run_with(PatchParams::default(), &canvas, &mask, 1, 3, &(), &CancelToken::new())
        .expect("copy");
    assert_eq!(out.images.len(), 3);
    for image in &out.images {
        assert!(image.enumerate_pixels().all(|(x, y, p)| p.0[..] == canvas.get_pixel(x, y).0[..3]));
    }
}

#[test]
fn soft_mask_values_and_translucent_pixels_are_generated() {
    let truth = checker(48, 48, 4);
    // A soft edge (mask 1..254) and a translucent strip must be filled like the hole;
    // only opaque, unmasked pixels are kept.
    let mut canvas = RgbaImage::from_fn(48, 48, |x, y| {
        let p = truth.get_pixel(x, y).0;
        Rgba([p[0], p[1], p[2], if y < 4 { 128 } else { 255 }])
    });
    let mask = GrayImage::from_fn(48, 48, |x, _| {
        Luma([if x >= 36 {
            255
        } else if x >= 32 {
            60
        } else {
            0
        }])
    });
    for (x, y, p) in canvas.enumerate_pixels_mut() {
        if x >= 32 {
            // Garbage under the mask must not leak into the result.
            *p = Rgba([0, 255, 0, p.0[3]]);
        }
        if y < 4 {
            p.0[1] = 255;
        }
    }
    let out = fill(&canvas, &mask, 4);
    let generated = |x: u32, y: u32| x >= 32 || y < 4;
    assert!(out
        .enumerate_pixels()
        .filter(|(x, y, _)| generated(*x, *y))
        .all(|(_, _, p)| p.0[1] < 200));
    assert!(mean_abs_error(&out, &truth, generated) < 8.0);
    assert_eq!(mean_abs_error(&out, &truth, |x, y| !generated(x, y)), 0.0);
}

/// Fills with the given tuning.
fn fill_with(params: PatchParams, canvas: &RgbaImage, mask: &GrayImage, seed: u64) -> RgbImage {
    let out = run_with(params, canvas, mask, seed, 1, &(), &CancelToken::new()).expect("fill");
    out.images.into_iter().next().expect("one image")
}

/// A photo-like scene: a fine, low-contrast wood-grain texture with one distinctive object
/// (a red disc with a white rim) near the middle.
fn scene_with_object(w: u32, h: u32, centre: (i32, i32), radius: i32) -> RgbImage {
    let grain = noise(w, h);
    RgbImage::from_fn(w, h, |x, y| {
        let (dx, dy) = (x as i32 - centre.0, y as i32 - centre.1);
        let d2 = dx * dx + dy * dy;
        if d2 <= radius * radius {
            Rgb([210, 25, 20])
        } else if d2 <= (radius + 2) * (radius + 2) {
            Rgb([245, 245, 240])
        } else {
            let n = i32::from(grain.get_pixel(x, y).0[0] / 16) + (y as i32 % 5) * 3;
            Rgb([(120 + n) as u8, (80 + n) as u8, (50 + n / 2) as u8])
        }
    })
}

/// Pixels where `region` holds that have the object's red.
fn object_pixels(img: &RgbImage, region: impl Fn(u32, u32) -> bool) -> usize {
    img.enumerate_pixels()
        .filter(|(x, y, p)| region(*x, *y) && p.0[0] > 170 && p.0[1] < 90 && p.0[2] < 90)
        .count()
}

/// The engine with the band and reuse priors, the locality cost and the smooth fallback
/// off: plain multi-scale PatchMatch, the control the priors are measured against.
fn without_priors() -> PatchParams {
    PatchParams {
        band: 0.0,
        reuse: 0.0,
        locality: 0.0,
        smooth_sigma: 0.0,
        ..PatchParams::default()
    }
}

/// The new border around the middle 64 x 64 of a 128 x 128 canvas.
fn border(x: u32, y: u32) -> bool {
    !((32..96).contains(&x) && (32..96).contains(&y))
}

#[test]
fn a_distinctive_object_is_not_copied_into_the_new_border() {
    // The disc fills the middle of the original, as the subject of a photo does.
    let truth = scene_with_object(128, 128, (64, 64), 20);
    let (canvas, mask) = punch(&truth, border);
    let disc = object_pixels(&truth, |_, _| true);
    let mut plain_total = 0;
    for seed in [1, 2, 3, 4] {
        let copied = object_pixels(&fill(&canvas, &mask, seed), border);
        assert!(
            copied * 2 < disc,
            "seed {seed}: {copied} red pixels in the border ({disc} in the disc)"
        );
        plain_total += object_pixels(&fill_with(without_priors(), &canvas, &mask, seed), border);
    }
    // The control: without the priors the same fills hold whole copies of the disc.
    assert!(
        plain_total >= 2 * disc,
        "{plain_total} red pixels without the priors ({disc} in the disc)"
    );
}

/// The largest step between neighbouring pixels (any channel) where `region` holds for
/// both.
fn largest_step(img: &RgbImage, region: impl Fn(u32, u32) -> bool) -> u8 {
    let mut largest = 0;
    for (x, y, p) in img.enumerate_pixels() {
        for (nx, ny) in [(x + 1, y), (x, y + 1)] {
            if nx < img.width() && ny < img.height() && region(x, y) && region(nx, ny) {
                let q = img.get_pixel(nx, ny);
                for c in 0..3 {
                    largest = largest.max(p.0[c].abs_diff(q.0[c]));
                }
            }
        }
    }
    largest
}

#[test]
fn a_smooth_gradient_is_continued_without_block_edges() {
    // A sky-like radial gradient, brighter outward: the new border needs brighter values
    // than any patch of the original holds, and flat patches copied side by side from
    // different places meet in visible steps.
    let truth = RgbImage::from_fn(128, 128, |x, y| {
        let d = ((x as f32 - 64.0).powi(2) + (y as f32 - 64.0).powi(2)) * 0.012;
        Rgb([(60.0 + d) as u8, (90.0 + d * 0.8) as u8, (140.0 + d * 0.5).min(255.0) as u8])
    });
    let (canvas, mask) = punch(&truth, border);
    for seed in [1, 7] {
        let out = fill(&canvas, &mask, seed);
        let step = largest_step(&out, border);
        assert!(step <= 2, "seed {seed}: a step of {step} between neighbouring fill pixels");
        assert!(mean_abs_error(&out, &truth, border) < 40.0);
        // The control: the same fill without the fallback has block edges.
        let plain = largest_step(&fill_with(without_priors(), &canvas, &mask, seed), border);
        assert!(plain > 2, "seed {seed}: a step of only {plain} without the fallback");
    }
}
