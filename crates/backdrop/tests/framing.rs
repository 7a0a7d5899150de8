//! Framing through the real binary: placement on the product's visible bounding box,
//! shadow styles, reflection and shadow-only backdrops, and the flags' refusals.

use backdrop_core::{Align, Padding, Placement};
use backdrop_imaging::placement::place;
use image::{Rgba, RgbaImage};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tempfile::TempDir;

fn backdrop(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_backdrop"))
        .args(args)
        .env_remove("BACKDROP_CONFIG")
        .output()
        .expect("binary runs")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A 90x160 product: a textured rounded body with a half-transparent rim.
fn product() -> RgbaImage {
    let (w, h) = (90u32, 160u32);
    RgbaImage::from_fn(w, h, |x, y| {
        let corner = |cx: u32, cy: u32| {
            let (dx, dy) = (f64::from(x) - f64::from(cx), f64::from(y) - f64::from(cy));
            (dx * dx + dy * dy).sqrt()
        };
        let r = 20;
        let d = match (x < r, x >= w - r, y < r, y >= h - r) {
            (true, _, true, _) => corner(r, r),
            (_, true, true, _) => corner(w - r - 1, r),
            (true, _, _, true) => corner(r, h - r - 1),
            (_, true, _, true) => corner(w - r - 1, h - r - 1),
            _ => 0.0,
        };
        let rim = x == 0 || y == 0 || x == w - 1 || y == h - 1;
        if d > f64::from(r) {
            Rgba([0, 0, 0, 0])
        } else if rim || d > f64::from(r) - 1.0 {
            Rgba([120, 60, 30, 128])
        } else {
            Rgba([(x * 2 + 40) as u8, (y + 60) as u8, ((x * y) % 97 + 100) as u8, 255])
        }
    })
}

/// The product cropped four ways: loose and off-centre, tall, wide with the product in a
/// corner, and tight.
fn crops() -> Vec<RgbaImage> {
    let p = product();
    [(300, 260, 20, 50), (120, 400, 15, 200), (500, 500, 400, 10), (90, 160, 0, 0)]
        .into_iter()
        .map(|(w, h, x, y)| {
            let mut canvas = RgbaImage::new(w, h);
            image::imageops::replace(&mut canvas, &p, x, y);
            canvas
        })
        .collect()
}

/// The visible bounding box (alpha >= 8): `(left, top, right, bottom)`, inclusive.
fn visible_box(img: &RgbaImage) -> (i64, i64, i64, i64) {
    let mut b = (i64::MAX, i64::MAX, i64::MIN, i64::MIN);
    for (x, y, p) in img.enumerate_pixels() {
        if p.0[3] >= 8 {
            let (x, y) = (i64::from(x), i64::from(y));
            b = (b.0.min(x), b.1.min(y), b.2.max(x), b.3.max(y));
        }
    }
    b
}

/// Where the rule says a `bw x bh` box goes in a `w x h` canvas: `(left, top, right,
/// bottom)`, inclusive, before rounding.
fn expected_box(
    (bw, bh): (f64, f64),
    (w, h): (f64, f64),
    scale: f64,
    [t, r, b, l]: [f64; 4],
    (ax, ay): (f64, f64),
    (ox, oy): (f64, f64),
) -> (f64, f64, f64, f64) {
    let px = |v: f64, side: f64| if v < 1.0 { v * side } else { v };
    let (t, r, b, l) = (px(t, h), px(r, w), px(b, h), px(l, w));
    let (fw, fh) = (w - l - r, h - t - b);
    let k = ((scale * w).min(fw) / bw).min((scale * h).min(fh) / bh);
    let (tw, th) = (bw * k, bh * k);
    let x = l + (fw - tw) * ax + ox;
    let y = t + (fh - th) * ay + oy;
    (x, y, x + tw - 1.0, y + th - 1.0)
}

/// Runs `generate` on `input` with `extra` flags; the decoded first result.
fn generate(dir: &Path, input: &RgbaImage, extra: &[&str]) -> (RgbaImage, Value) {
    let path = dir.join("in.png");
    input.save(&path).expect("write the cut-out");
    let out = dir.join("out");
    let mut args = vec!["generate", s(&path), "--prompt", "catalogue", "--seed", "3"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--json", "-o", s(&out)]);
    let result = backdrop(&args);
    assert!(
        result.status.success(),
        "{extra:?} failed: {}",
        String::from_utf8_lossy(&result.stderr)
    );
    let summary: Value = serde_json::from_slice(&result.stdout).expect("JSON summary");
    let first = PathBuf::from(summary["images"][0]["path"].as_str().expect("path"));
    (image::open(first).expect("result decodes").to_rgba8(), summary)
}

/// Asserts two images are equal, naming the first difference (not printing them).
fn same_pixels(a: &RgbaImage, b: &RgbaImage, what: &str) {
    assert_eq!(a.dimensions(), b.dimensions(), "{what}");
    let diff: Vec<_> = a.enumerate_pixels().filter(|(x, y, p)| *p != b.get_pixel(*x, *y)).collect();
    assert!(
        diff.is_empty(),
        "{what}: {} pixels differ, first {:?} vs {:?}",
        diff.len(),
        diff[0],
        b.get_pixel(diff[0].0, diff[0].1)
    );
}

struct Case {
    flags: &'static [&'static str],
    placement: Placement,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            flags: &["--scale", "0.5"],
            placement: Placement { scale: 0.5, ..Default::default() },
        },
        Case {
            flags: &["--padding", "0.1", "--align", "bottom"],
            placement: Placement {
                padding: Padding::uniform(0.1),
                align: Align::Bottom,
                ..Default::default()
            },
        },
        Case {
            flags: &["--padding", "20,40,10,30", "--align", "top-left", "--scale", "0.8"],
            placement: Placement {
                scale: 0.8,
                padding: Padding([20.0, 40.0, 10.0, 30.0]),
                align: Align::TopLeft,
                ..Default::default()
            },
        },
        Case {
            flags: &["--scale", "0.6", "--align", "right", "--offset", "-15,12"],
            placement: Placement {
                scale: 0.6,
                align: Align::Right,
                offset: [-15, 12],
                ..Default::default()
            },
        },
    ]
}

#[test]
fn every_crop_lands_where_scale_padding_and_align_say() {
    let dir = TempDir::new().expect("tmp");
    let (w, h) = (400.0, 300.0);
    for case in cases() {
        let p = &case.placement;
        let want = expected_box((90.0, 160.0), (w, h), p.scale, p.padding.0, p.align.anchor(), {
            (f64::from(p.offset[0]), f64::from(p.offset[1]))
        });
        for (i, crop) in crops().iter().enumerate() {
            let mut flags =
                vec!["--size", "400x300", "--backdrop", "transparent", "--shadow", "none"];
            flags.extend_from_slice(case.flags);
            let (out, _) = generate(dir.path(), crop, &flags);
            assert_eq!(out.dimensions(), (400, 300));
            let got = visible_box(&out);
            let near = |a: i64, b: f64| (a as f64 - b).abs() <= 1.0;
            assert!(
                near(got.0, want.0)
                    && near(got.1, want.1)
                    && near(got.2, want.2)
                    && near(got.3, want.3),
                "crop {i} with {:?}: box {got:?}, the rule says {want:?}",
                case.flags
            );
            // Transparent and shadowless, the result is exactly the resampled cut-out.
            let resampled = place(crop, 400, 300, p).expect("placed");
            same_pixels(&out, &resampled, &format!("crop {i} with {:?}", case.flags));
        }
    }
}

#[test]
fn opaque_pixels_equal_the_resampled_cutout_on_a_generated_backdrop() {
    let dir = TempDir::new().expect("tmp");
    let crop = &crops()[0];
    for (engine, shadow) in [("studio", "hard"), ("patch", "soft"), ("studio", "floating")] {
        let (out, summary) = generate(
            dir.path(),
            crop,
            &[
                "--size",
                "360x360",
                "--scale",
                "0.7",
                "--align",
                "bottom",
                "--padding",
                "0,0,0.1,0",
                "--engine",
                engine,
                "--shadow",
                shadow,
                "--reflection",
                "0.4",
            ],
        );
        assert_eq!(summary["engine"], engine);
        let placement = Placement {
            scale: 0.7,
            align: Align::Bottom,
            padding: Padding([0.0, 0.0, 0.1, 0.0]),
            offset: [0, 0],
        };
        let resampled = place(crop, 360, 360, &placement).expect("placed");
        let mut opaque = 0;
        for (x, y, p) in resampled.enumerate_pixels().filter(|(_, _, p)| p.0[3] == 255) {
            assert_eq!(out.get_pixel(x, y).0[..3], p.0[..3], "({x},{y}) with {engine}/{shadow}");
            opaque += 1;
        }
        assert!(opaque > 20_000, "the product is large: {opaque}");
    }
}

/// The darkness a white backdrop shows outside the product: `(x, y, 255 - red)`.
fn shade(out: &RgbaImage, product: &RgbaImage) -> Vec<(u32, u32, f64)> {
    out.enumerate_pixels()
        .filter(|(x, y, p)| product.get_pixel(*x, *y).0[3] == 0 && p.0[0] < 255)
        .map(|(x, y, p)| (x, y, f64::from(255 - p.0[0])))
        .collect()
}

#[test]
fn each_shadow_style_darkens_its_side_of_the_floor_only() {
    let dir = TempDir::new().expect("tmp");
    let crop = &crops()[1];
    let flags =
        ["--size", "400x400", "--scale", "0.45", "--align", "bottom", "--padding", "0,0,0.2,0"];
    let placement = Placement {
        scale: 0.45,
        align: Align::Bottom,
        padding: Padding([0.0, 0.0, 0.2, 0.0]),
        offset: [0, 0],
    };
    let product = place(crop, 400, 400, &placement).expect("placed");
    let (left, top, right, base) = visible_box(&product);
    let (centre, tall) = ((left + right) as f64 / 2.0, (base - top + 1) as f64);
    let run = |extra: &[&str]| {
        let mut all: Vec<&str> = flags.to_vec();
        all.extend_from_slice(&["--backdrop", "#FFFFFF"]);
        all.extend_from_slice(extra);
        let (out, _) = generate(dir.path(), crop, &all);
        for (x, y, p) in product.enumerate_pixels().filter(|(_, _, p)| p.0[3] == 255) {
            assert_eq!(out.get_pixel(x, y).0[..3], p.0[..3], "product pixel ({x},{y}) {extra:?}");
        }
        shade(&out, &product)
    };
    // Darkness on each side of the product's centre line, and its centroid row.
    let sides = |shade: &[(u32, u32, f64)]| {
        let mass = |keep: &dyn Fn(f64) -> bool| -> f64 {
            shade.iter().filter(|(x, _, _)| keep(f64::from(*x))).map(|(_, _, d)| d).sum()
        };
        let total: f64 = shade.iter().map(|(_, _, d)| d).sum();
        let row = shade.iter().map(|(_, y, d)| f64::from(*y) * d).sum::<f64>() / total.max(1.0);
        (mass(&|x| x < centre - 1.0), mass(&|x| x > centre + 1.0), row, total)
    };
    let floor_only = |shade: &[(u32, u32, f64)], style: &str| {
        let highest = shade.iter().filter(|p| p.2 >= 2.0).map(|p| i64::from(p.1)).min();
        assert!(
            highest.is_some_and(|y| y as f64 >= base as f64 - 0.5 * tall),
            "{style}: darkness climbs to row {highest:?}; the product spans {top}..={base}"
        );
    };

    assert!(run(&["--shadow", "none"]).is_empty(), "no shadow leaves the white untouched");

    let contact = run(&["--shadow", "contact"]);
    floor_only(&contact, "contact");
    let (l, r, row, total) = sides(&contact);
    assert!(total > 500.0, "contact darkens something: {total}");
    assert!(
        (row - base as f64).abs() <= 0.08 * tall,
        "contact sits at the base: row {row}, base {base}"
    );
    assert!((l - r).abs() < 0.25 * (l + r), "contact is even: left {l} right {r}");

    for (style, direction) in [("hard", 90), ("soft", 90), ("hard", 270), ("soft", 270)] {
        let dir = direction.to_string();
        let shade = run(&["--shadow", style, "--shadow-direction", &dir]);
        floor_only(&shade, style);
        let (l, r, _, _) = sides(&shade);
        let (near, far) = if direction == 90 { (r, l) } else { (l, r) };
        assert!(near > 2.0 * far, "{style} at {direction}: toward {near} away {far}");
    }

    let front = run(&["--shadow", "hard", "--shadow-direction", "180"]);
    floor_only(&front, "hard front");
    let (_, _, row, _) = sides(&front);
    assert!(row > base as f64, "a shadow falling toward the camera lies below the base: {row}");

    let floating = run(&["--shadow", "floating"]);
    floor_only(&floating, "floating");
    let row_darkness =
        |y: i64| -> f64 { floating.iter().filter(|p| i64::from(p.1) == y).map(|p| p.2).sum() };
    let peak = (base + 1..base + (0.3 * tall) as i64)
        .max_by(|a, b| row_darkness(*a).total_cmp(&row_darkness(*b)))
        .expect("rows under the product");
    assert!(peak as f64 >= base as f64 + 0.04 * tall, "floating: darkest row {peak}, base {base}");
    assert!(row_darkness(base + 1) < 0.8 * row_darkness(peak), "floating: detached from the base");

    let lighter = run(&["--shadow", "hard", "--shadow-direction", "90", "--shadow-opacity", "0.2"]);
    let darker = run(&["--shadow", "hard", "--shadow-direction", "90", "--shadow-opacity", "0.9"]);
    assert!(sides(&darker).3 > 2.0 * sides(&lighter).3, "opacity scales the darkness");
}

#[test]
fn a_transparent_backdrop_holds_only_product_and_shadow() {
    let dir = TempDir::new().expect("tmp");
    let crop = &crops()[2];
    let placement = Placement {
        scale: 0.5,
        align: Align::Bottom,
        padding: Padding([0.0, 0.0, 0.15, 0.0]),
        ..Default::default()
    };
    let product = place(crop, 320, 320, &placement).expect("placed");
    let (_, top, _, base) = visible_box(&product);
    let tall = (base - top + 1) as f64;
    for style in ["contact", "soft", "hard", "floating"] {
        let (out, summary) = generate(
            dir.path(),
            crop,
            &[
                "--size",
                "320x320",
                "--scale",
                "0.5",
                "--align",
                "bottom",
                "--padding",
                "0,0,0.15,0",
                "--shadow",
                style,
                "--backdrop",
                "transparent",
            ],
        );
        assert_eq!(summary["notes"]["backdrop"], "transparent: no background generated");
        let mut shadow = 0;
        for (x, y, p) in out.enumerate_pixels() {
            let mine = product.get_pixel(x, y);
            match mine.0[3] {
                255 => assert_eq!(p, mine, "product pixel ({x},{y}) with {style}"),
                0 if p.0[3] > 0 => {
                    shadow += 1;
                    assert_eq!(p.0[..3], [0, 0, 0], "({x},{y}) is shadow, so black, with {style}");
                    assert!(
                        f64::from(y) >= base as f64 - 0.5 * tall,
                        "({x},{y}) has alpha above the floor with {style}"
                    );
                }
                _ => {}
            }
        }
        assert!(shadow > 100, "{style} casts a shadow: {shadow} pixels");
    }
}

#[test]
fn a_colour_backdrop_with_reflection_mirrors_the_product_below_it() {
    let dir = TempDir::new().expect("tmp");
    let crop = &crops()[0];
    let placement = Placement {
        scale: 0.5,
        align: Align::Bottom,
        padding: Padding([0.0, 0.0, 0.25, 0.0]),
        ..Default::default()
    };
    let product = place(crop, 300, 300, &placement).expect("placed");
    let (left, _, right, base) = visible_box(&product);
    let (out, _) = generate(
        dir.path(),
        crop,
        &[
            "--size",
            "300x300",
            "--scale",
            "0.5",
            "--align",
            "bottom",
            "--padding",
            "0,0,0.25,0",
            "--shadow",
            "none",
            "--reflection",
            "0.5",
            "--backdrop",
            "#203040",
        ],
    );
    let x = ((left + right) / 2) as u32;
    let (below, mirrored) =
        (out.get_pixel(x, base as u32 + 3), product.get_pixel(x, base as u32 - 3));
    assert_ne!(below.0[..3], [0x20, 0x30, 0x40], "the floor under the product reflects it");
    let toward = |c: usize| {
        let (bg, src, got) =
            (f64::from([0x20, 0x30, 0x40][c]), f64::from(mirrored.0[c]), f64::from(below.0[c]));
        (got - bg) * (src - bg) >= 0.0
    };
    assert!((0..3).all(toward), "the reflection takes the product's colours: {below:?}");
    let far = out.get_pixel(x, 299);
    assert_eq!(far.0[..3], [0x20, 0x30, 0x40], "the reflection fades out");
    assert_eq!(out.get_pixel(2, 2).0[..3], [0x20, 0x30, 0x40], "the colour is plain");
}

#[test]
fn bad_framing_values_are_refused_with_their_codes() {
    let dir = TempDir::new().expect("tmp");
    let input = dir.path().join("in.png");
    crops()[0].save(&input).expect("write");
    let out = dir.path().join("never");
    let cases: &[(&[&str], &str)] = &[
        (&["--scale", "0"], "scale_out_of_range"),
        (&["--scale", "1.5"], "scale_out_of_range"),
        (&["--size", "200x200", "--padding", "0.5"], "padding_leaves_no_room"),
        (&["--padding", "0,200,0,120"], "padding_leaves_no_room"),
        (&["--padding", "1,2"], "invalid_padding"),
        (&["--align", "middle"], "unknown_align"),
        (&["--offset", "3"], "invalid_offset"),
        (&["--shadow", "dramatic"], "unknown_shadow_style"),
        (&["--shadow", "hard", "--shadow-opacity", "1.5"], "shadow_out_of_range"),
        (&["--shadow-softness", "-0.1"], "shadow_out_of_range"),
        (&["--reflection", "2"], "reflection_out_of_range"),
        (&["--backdrop", "blue"], "invalid_backdrop"),
        (&["--backdrop", "transparent", "--format", "jpg"], "invalid_backdrop"),
    ];
    for (flags, code) in cases {
        let mut args = vec!["generate", s(&input), "--prompt", "x"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["-o", s(&out)]);
        let result = backdrop(&args);
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert_eq!(result.status.code(), Some(2), "{flags:?}: {stderr}");
        assert!(stderr.contains(&format!("[{code}]")), "{flags:?}: {stderr}");
        assert!(!out.exists(), "{flags:?} wrote output");
    }
}

/// The framing examples of the README, run as a newcomer would paste them.
#[test]
fn the_readme_framing_examples_run() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
    let commands: Vec<String> = shell_commands(&readme)
        .into_iter()
        .filter(|c| {
            c.starts_with("backdrop generate")
                && ["--scale", "--shadow", "--backdrop"].iter().any(|f| c.contains(f))
        })
        .collect();
    assert!(commands.len() >= 3, "the README shows framing examples: {commands:?}");
    let dir = TempDir::new().expect("tmp");
    for command in &commands {
        let words = split_words(command);
        let mut args: Vec<String> = words[1..].to_vec();
        // The README writes to `out`; the test to its own folder, from the repository root.
        if let Some(i) = args.iter().position(|a| a == "-o") {
            args[i + 1] = s(dir.path()).to_string();
        }
        let result = Command::new(env!("CARGO_BIN_EXE_backdrop"))
            .args(&args)
            .current_dir(&root)
            .env_remove("BACKDROP_CONFIG")
            .output()
            .expect("binary runs");
        assert!(result.status.success(), "{command}: {}", String::from_utf8_lossy(&result.stderr));
    }
}

/// The commands of the README's `sh` blocks, continuation lines joined and comments cut.
fn shell_commands(readme: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_block = false;
    let mut current = String::new();
    for line in readme.lines() {
        if line.starts_with("```") {
            in_block = line.trim() == "```sh";
            continue;
        }
        if !in_block {
            continue;
        }
        let line = match line.find("  #") {
            Some(i) => &line[..i],
            None => line,
        };
        let trimmed = line.trim();
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
        } else {
            current.push_str(trimmed);
            if !current.trim().is_empty() {
                out.push(current.trim().to_string());
            }
            current.clear();
        }
    }
    out
}

/// Splits a command line into words the way a POSIX shell does for plain words and
/// single or double quotes.
fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote = None;
    let mut has = false;
    for c in line.chars() {
        match (quote, c) {
            (None, '\'' | '"') => {
                quote = Some(c);
                has = true;
            }
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if has {
                    words.push(std::mem::take(&mut word));
                    has = false;
                }
            }
            (_, c) => {
                word.push(c);
                has = true;
            }
        }
    }
    if has {
        words.push(word);
    }
    words
}
