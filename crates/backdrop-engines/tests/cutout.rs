//! Automatic cut-out in the job pipeline, with a segmenter whose matte is known: when a
//! background job segments its input, that the product's opaque pixels come back exactly,
//! and that empty and full mattes are refused with their own code. (The real model runs
//! in backdrop-diffusion's tests and through the binary.)

use backdrop_core::{
    BackgroundSpec, CancelToken, CutoutMode, EngineError, EngineName, ErrorCode, Segmenter,
};
use backdrop_engines::pipeline::{cut_out, run_background, BackgroundJob};
use backdrop_engines::Engines;
use backdrop_imaging::{DecodedImage, InputFormat};
use image::{GrayImage, Luma, Rgba, RgbaImage};
use std::sync::Arc;

/// Answers every photo with the same matte.
struct FixedMatte(GrayImage);

impl Segmenter for FixedMatte {
    fn default_model(&self) -> String {
        "fixed".into()
    }

    fn segment(
        &self,
        _photo: &RgbaImage,
        _model: Option<&str>,
        cancel: &CancelToken,
    ) -> Result<GrayImage, EngineError> {
        cancel.check()?;
        Ok(self.0.clone())
    }
}

const SIDE: u32 = 96;

/// A disc: 255 inside, a soft ring, 0 outside.
fn disc() -> GrayImage {
    GrayImage::from_fn(SIDE, SIDE, |x, y| {
        let d = ((x as f32 - 48.0).powi(2) + (y as f32 - 48.0).powi(2)).sqrt();
        Luma([((30.0 - d) * 64.0).clamp(0.0, 255.0) as u8])
    })
}

/// An opaque "photo" with a different colour at every pixel.
fn photo() -> DecodedImage {
    let image = RgbaImage::from_fn(SIDE, SIDE, |x, y| {
        Rgba([(x * 2) as u8, (y * 2) as u8, ((x * 7 + y * 3) % 256) as u8, 255])
    });
    DecodedImage { image, format: InputFormat::Png, has_alpha: false }
}

fn engines(matte: GrayImage) -> Engines {
    Engines::weight_free().with_segmenter(Arc::new(FixedMatte(matte)))
}

fn job<'a>(input: &'a DecodedImage, spec: &'a BackgroundSpec) -> BackgroundJob<'a> {
    BackgroundJob {
        cutout: input,
        spec,
        reference: None,
        mask_grow: backdrop_imaging::mask::DEFAULT_BACKGROUND_GROW,
        engine: EngineName::Studio,
        options: Default::default(),
    }
}

fn spec(cutout: CutoutMode) -> BackgroundSpec {
    BackgroundSpec {
        scene: Some("white-seamless".into()),
        seed: Some(3),
        cutout,
        ..Default::default()
    }
}

#[test]
fn auto_cuts_a_photo_out_and_keeps_the_products_pixels_exactly() {
    let photo = photo();
    let matte = disc();
    let spec = spec(CutoutMode::Auto);
    let output =
        run_background(&engines(matte.clone()), &job(&photo, &spec), &(), &CancelToken::new())
            .expect("runs");
    let image = output.images[0].to_rgb8();
    let mut opaque = 0;
    for (x, y, a) in matte.enumerate_pixels() {
        if a.0[0] == 255 {
            opaque += 1;
            assert_eq!(image.get_pixel(x, y).0, photo.image.get_pixel(x, y).0[..3], "({x}, {y})");
        }
    }
    assert!(opaque > 2000, "{opaque}");
    // Far outside the product the background was generated, not the photo kept.
    let corner = image.get_pixel(2, 2).0;
    assert_ne!(corner, photo.image.get_pixel(2, 2).0[..3]);
    assert!(output.notes.iter().any(|(k, v)| k == "cutout" && v == "fixed"), "{:?}", output.notes);
}

#[test]
fn never_and_a_missing_segmenter_keep_the_cutout_rules() {
    let photo = photo();
    let never = spec(CutoutMode::Never);
    let err = run_background(&engines(disc()), &job(&photo, &never), &(), &CancelToken::new())
        .expect_err("a photo is not a cut-out");
    assert_eq!(err.code(), ErrorCode::NoAlphaChannel);
    let auto = spec(CutoutMode::Auto);
    let err =
        run_background(&Engines::weight_free(), &job(&photo, &auto), &(), &CancelToken::new())
            .expect_err("no segmenter");
    assert_eq!(err.code(), ErrorCode::NoAlphaChannel);
    let always = spec(CutoutMode::Always);
    let err =
        run_background(&Engines::weight_free(), &job(&photo, &always), &(), &CancelToken::new())
            .expect_err("no segmenter");
    assert!(err.to_string().contains("no segmentation model"), "{err}");
}

#[test]
fn empty_and_full_mattes_are_refused_as_no_object() {
    let photo = photo();
    for (matte, words) in [
        (GrayImage::new(SIDE, SIDE), "covers 0.00%"),
        (GrayImage::from_pixel(SIDE, SIDE, Luma([255])), "whole picture"),
    ] {
        let engines = engines(matte);
        let err = cut_out(&engines, &photo, None, &CancelToken::new()).expect_err("no object");
        assert_eq!(err.code(), ErrorCode::NoObjectFound);
        assert!(err.to_string().contains(words), "{err}");
        let spec = spec(CutoutMode::Auto);
        let err = run_background(&engines, &job(&photo, &spec), &(), &CancelToken::new())
            .expect_err("no object");
        assert_eq!(err.code(), ErrorCode::NoObjectFound);
    }
}

#[test]
fn a_cutout_keeps_the_photo_and_takes_the_mattes_alpha() {
    let photo = photo();
    let matte = disc();
    let cut = cut_out(&engines(matte.clone()), &photo, None, &CancelToken::new()).expect("cut");
    for ((c, p), a) in cut.image.image.pixels().zip(photo.image.pixels()).zip(matte.pixels()) {
        assert_eq!(c.0[..3], p.0[..3]);
        assert_eq!(c.0[3], a.0[0]);
    }
    assert_eq!(cut.model, "fixed");
}
