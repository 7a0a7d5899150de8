//! Writes a contact sheet of every shadow style, for choosing a catalogue's look.
//!
//! ```text
//! cargo run --release -p backdrop-engines --example shadow_styles -- OUT.png [CUTOUT.png]
//! ```
//!
//! One row per style (`none`, `contact`, `soft`, `hard`, `floating`, and `hard` with a
//! floor reflection), one column per backdrop: plain white, the studio engine's
//! `warm-paper` scene, and transparent (shown over a checkerboard). Every cell frames
//! the cut-out the same way (scale 0.55, standing on a 22% bottom margin), through the
//! same job pipeline the command line and the service run. The cut-out defaults to
//! `examples/bottle-cutout.png`.

use backdrop_core::{
    Align, Backdrop, BackgroundSpec, CancelToken, EngineName, EngineOptions, Framing, OutputSize,
    Padding, Placement, ShadowSpec, ShadowStyle,
};
use backdrop_engines::pipeline::{run_background, BackgroundJob};
use backdrop_engines::Engines;
use backdrop_imaging::mask::DEFAULT_BACKGROUND_GROW;
use backdrop_imaging::watermark::glyph;
use image::{imageops, Rgba, RgbaImage};

const CELL: u32 = 320;
const GAP: u32 = 12;
const LABEL_W: u32 = 236;
const HEADER_H: u32 = 48;
const INK: Rgba<u8> = Rgba([52, 54, 58, 255]);
const SHEET: Rgba<u8> = Rgba([236, 236, 234, 255]);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(out) = args.first() else {
        eprintln!("usage: shadow_styles OUT.png [CUTOUT.png]");
        std::process::exit(2);
    };
    let cutout_path = args.get(1).cloned().unwrap_or_else(|| {
        format!("{}/../../examples/bottle-cutout.png", env!("CARGO_MANIFEST_DIR"))
    });
    let bytes = std::fs::read(&cutout_path).expect("read the cut-out");
    let cutout = backdrop_imaging::decode(&bytes, &Default::default()).expect("decode the cut-out");

    let rows: Vec<(&str, ShadowStyle, f32)> = vec![
        ("NONE", ShadowStyle::None, 0.0),
        ("CONTACT", ShadowStyle::Contact, 0.0),
        ("SOFT", ShadowStyle::Soft, 0.0),
        ("HARD", ShadowStyle::Hard, 0.0),
        ("FLOATING", ShadowStyle::Floating, 0.0),
        ("HARD + REFLECTION", ShadowStyle::Hard, 0.35),
    ];
    let columns: [(&str, Backdrop); 3] = [
        ("ON WHITE", Backdrop::Colour([255, 255, 255])),
        ("STUDIO SCENE", Backdrop::Generate),
        ("TRANSPARENT", Backdrop::Transparent),
    ];
    let width = LABEL_W + columns.len() as u32 * (CELL + GAP) + GAP;
    let height = HEADER_H + rows.len() as u32 * (CELL + GAP) + GAP;
    let mut sheet = RgbaImage::from_pixel(width, height, SHEET);
    let engines = Engines::weight_free();
    for (c, (heading, _)) in columns.iter().enumerate() {
        let x = LABEL_W + c as u32 * (CELL + GAP);
        text(&mut sheet, heading, x + 4, HEADER_H / 2 - 7, 2);
    }
    for (r, (label, style, reflection)) in rows.iter().enumerate() {
        let y = HEADER_H + r as u32 * (CELL + GAP);
        text(&mut sheet, label, 16, y + CELL / 2 - 7, 2);
        for (c, (_, backdrop)) in columns.iter().enumerate() {
            let spec = BackgroundSpec {
                scene: Some("warm-paper".into()),
                seed: Some(5),
                size: Some(OutputSize { width: CELL, height: CELL }),
                framing: Framing {
                    placement: Some(Placement {
                        scale: 0.55,
                        padding: Padding([0.0, 0.0, 0.22, 0.0]),
                        align: Align::Bottom,
                        offset: [0, 0],
                    }),
                    shadow: Some(ShadowSpec::style(*style)),
                    reflection: *reflection,
                    backdrop: *backdrop,
                },
                ..Default::default()
            };
            let job = BackgroundJob {
                cutout: &cutout,
                spec: &spec,
                reference: None,
                mask_grow: DEFAULT_BACKGROUND_GROW,
                engine: EngineName::Studio,
                options: EngineOptions::default(),
            };
            let output =
                run_background(&engines, &job, &(), &CancelToken::new()).expect("the job runs");
            let cell = output.images[0].to_rgba8();
            let x = LABEL_W + c as u32 * (CELL + GAP);
            let mut tile = checkerboard();
            imageops::overlay(&mut tile, &cell, 0, 0);
            imageops::replace(&mut sheet, &tile, i64::from(x), i64::from(y));
        }
    }
    sheet.save(out).expect("write the sheet");
    println!("wrote {out} ({width}x{height})");
}

/// The light grey checkerboard image editors show behind transparency.
fn checkerboard() -> RgbaImage {
    RgbaImage::from_fn(CELL, CELL, |x, y| {
        if (x / 16 + y / 16) % 2 == 0 {
            Rgba([250, 250, 250, 255])
        } else {
            Rgba([222, 222, 222, 255])
        }
    })
}

/// Draws `s` in the watermark's 5x7 capital font, each font pixel `scale` pixels square.
fn text(image: &mut RgbaImage, s: &str, x: u32, y: u32, scale: u32) {
    for (i, ch) in s.chars().enumerate() {
        let left = x + i as u32 * 6 * scale;
        for (row, bits) in glyph(ch).iter().enumerate() {
            for col in 0..5u32 {
                if bits & (0x10 >> col) == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let (px, py) = (left + col * scale + dx, y + row as u32 * scale + dy);
                        if px < image.width() && py < image.height() {
                            image.put_pixel(px, py, INK);
                        }
                    }
                }
            }
        }
    }
}
