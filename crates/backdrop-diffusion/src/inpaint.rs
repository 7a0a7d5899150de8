//! The inpainting denoising loop with diffusers' `StableDiffusionInpaintPipeline`
//! semantics, so that the same model, prompt, seed and settings give the same image.
//!
//! This module owns everything between a prepared image and mask (at a multiple of the VAE
//! scale) and the decoded images:
//! - the image normalised to [-1, 1]; the mask binarised at 0.5; the masked image is the
//!   image where the mask is below 0.5; both are encoded by the VAE;
//! - random numbers drawn per image from a PyTorch CPU generator seeded with that image's
//!   seed, in diffusers' order: image latents (4-channel UNets, or strength below 1),
//!   initial noise, masked-image latents, then whatever the scheduler draws per step;
//! - classifier-free guidance with the negative (or empty) prompt and the prompt in one
//!   UNet batch, several images per call as `max_batch` allows; with guidance 1 or less
//!   (LCM's few-step setting) only the prompt's half runs, a batch of one per image, as
//!   diffusers skips guidance when `guidance_scale <= 1`;
//! - the decode through the model's decoder (the KL VAE, or a tiny TAESD-style decoder
//!   configured per model, each with its own latent scaling);
//! - inpainting UNets (9 channels) get the mask and masked-image latents concatenated;
//!   ordinary UNets (4 channels) get the known latents, re-noised to the next step's level,
//!   blended back after every step;
//! - strength below 1 starts from the noised image latents part-way down the schedule;
//! - a cancel check before every step and a progress report after it.
//!
//! Image `i` of a run is exactly image 0 of a run seeded `seed + i`: each image has its
//! own generator, as if diffusers ran once per image.

use crate::model::{EncoderOutput, Model};
use crate::rng::TorchGenerator;
use crate::scheduler::{SchedulerKind, Step};
use crate::DiffusionError;
use backdrop_core::{CancelToken, Progress, StepProgress};
use image::{GrayImage, RgbImage};

/// One inpainting run.
#[derive(Debug, Clone)]
pub struct InpaintRequest<'a> {
    /// The image; both sides a multiple of the model's `size_multiple`.
    pub image: &'a RgbImage,
    /// 255 where to generate; binarised at 0.5.
    pub mask: &'a GrayImage,
    /// The prompt.
    pub prompt: &'a str,
    /// The negative prompt (empty when absent, as diffusers does).
    pub negative_prompt: Option<&'a str>,
    /// One seed per image.
    pub seeds: &'a [u64],
    /// Denoising steps of the full schedule.
    pub steps: usize,
    /// Guidance scale; 1 or less turns classifier-free guidance off.
    pub guidance: f32,
    /// The scheduler.
    pub scheduler: SchedulerKind,
    /// 1 starts from pure noise; below 1 starts from the noised image (img2img).
    pub strength: f32,
    /// Images per UNet call (each is two batch entries with guidance).
    pub max_batch: usize,
}

/// What a run made.
#[derive(Debug, Clone)]
pub struct InpaintOutput {
    /// The decoded images.
    pub images: Vec<RgbImage>,
    /// The final latents per image, before decoding (`[c, h/f, w/f]` each).
    pub latents: Vec<Vec<f32>>,
}

/// The steps a strength runs: `(first index, count)`, diffusers' `get_timesteps`.
pub fn strength_steps(steps: usize, strength: f32) -> (usize, usize) {
    let init = ((steps as f64 * f64::from(strength)) as usize).min(steps);
    (steps - init, init)
}

/// Image pixels as `[1, 3, h, w]` in [-1, 1] (`VaeImageProcessor` normalisation).
fn normalised(image: &RgbImage, keep: Option<&[bool]>) -> Vec<f32> {
    let (w, h) = image.dimensions();
    let plane = (w * h) as usize;
    let mut out = vec![0f32; 3 * plane];
    for (i, p) in image.pixels().enumerate() {
        for c in 0..3 {
            let v = f32::from(p[c]) / 255.0;
            let v = 2.0 * v - 1.0;
            out[c * plane + i] = match keep {
                Some(keep) if !keep[i] => 0.0,
                _ => v,
            };
        }
    }
    out
}

/// The UNet-scale latent of an encoder output: drawn with `generator` from a distribution
/// (or a draw made for diffusers' stream), or taken as it is; times the scaling factor.
fn latent_from(
    encoded: &[f32],
    kind: EncoderOutput,
    channels: usize,
    scaling: f32,
    generator: &mut TorchGenerator,
) -> Vec<f32> {
    match kind {
        EncoderOutput::Parameters => {
            let len = encoded.len() / 2;
            debug_assert_eq!(len % channels, 0);
            let (mean, logvar) = encoded.split_at(len);
            let noise = generator.randn(len);
            mean.iter()
                .zip(logvar)
                .zip(&noise)
                .map(|((&m, &lv), &n)| {
                    let std = (0.5 * lv.clamp(-30.0, 20.0)).exp();
                    (m + std * n) * scaling
                })
                .collect()
        }
        EncoderOutput::Latents => encoded.iter().map(|&v| v * scaling).collect(),
        EncoderOutput::Sampled => {
            // Keep the generator stream aligned with diffusers even though the graph
            // sampled on its own.
            let _ = generator.randn(encoded.len());
            encoded.iter().map(|&v| v * scaling).collect()
        }
    }
}

/// Runs the loop. `progress` is told after each step with `images` steps of `steps`.
pub fn inpaint(
    model: &Model,
    request: &InpaintRequest<'_>,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<InpaintOutput, DiffusionError> {
    let info = &model.info;
    let encoder = &info.encoder;
    let (width, height) = request.image.dimensions();
    let (width, height) = (width as usize, height as usize);
    let f = info.vae_scale_factor;
    let multiple = info.size_multiple;
    if width % multiple != 0
        || height % multiple != 0
        || request.mask.dimensions() != request.image.dimensions()
    {
        return Err(DiffusionError::Failed(format!(
            "image {width}x{height} must be a multiple of {multiple} and match its mask"
        )));
    }
    if request.seeds.is_empty() {
        return Ok(InpaintOutput { images: Vec::new(), latents: Vec::new() });
    }
    let (lw, lh) = (width / f, height / f);
    let c = info.latent_channels;
    let per_image = c * lh * lw;
    let nine = info.unet_in_channels != c;

    let mut scheduler = request
        .scheduler
        .build(&info.scheduler, request.steps)
        .map_err(|e| DiffusionError::Failed(e.to_string()))?;
    let (t_start, count) = strength_steps(request.steps, request.strength);
    if count == 0 {
        return Err(DiffusionError::Failed(format!(
            "strength {} with {} steps runs no step; raise one of them",
            request.strength, request.steps
        )));
    }
    let strength_max = request.strength >= 1.0;
    let guided = request.guidance > 1.0;

    // Text: the negative (or empty) prompt and the prompt in one batch.
    cancel.check()?;
    let mut ids = Vec::new();
    if guided {
        ids.push(model.tokenizer.encode(request.negative_prompt.unwrap_or(""))?);
    }
    ids.push(model.tokenizer.encode(request.prompt)?);
    let (embeddings, dim) = model.encode_text(&ids)?;
    let seq = model.tokenizer.max_length();
    let embedding = |which: usize| &embeddings[which * seq * dim..(which + 1) * seq * dim];

    // Mask, binarised at 0.5, and its nearest-neighbour latent-size copy.
    let generate: Vec<bool> =
        request.mask.pixels().map(|p| f32::from(p[0]) / 255.0 >= 0.5).collect();
    let keep: Vec<bool> = generate.iter().map(|g| !g).collect();
    let mut mask_latent = vec![0f32; lh * lw];
    for y in 0..lh {
        for x in 0..lw {
            mask_latent[y * lw + x] = if generate[(y * f) * width + x * f] { 1.0 } else { 0.0 };
        }
    }

    cancel.check()?;
    let need_image_latents = !nine || !strength_max;
    let image_moments = if need_image_latents {
        Some(model.encode_image(normalised(request.image, None), height, width)?)
    } else {
        None
    };
    cancel.check()?;
    let masked_moments =
        model.encode_image(normalised(request.image, Some(&keep)), height, width)?;
    // An encoder that is not what the model says (a KL encoder named as `tiny_encoder`,
    // a graph of other channels) is refused here, not found by a slice copy later.
    let expected = match encoder.output {
        EncoderOutput::Parameters => 2 * per_image,
        EncoderOutput::Sampled | EncoderOutput::Latents => per_image,
    };
    for encoded in image_moments.iter().chain([&masked_moments]) {
        if encoded.len() != expected {
            return Err(DiffusionError::Failed(format!(
                "{} gave {} values for a {width}x{height} image, not the {expected} of {c} latent channels{}",
                encoder.file.display(),
                encoded.len(),
                if encoder.output == EncoderOutput::Parameters { " (mean and log-variance)" } else { "" }
            )));
        }
    }

    // Per image: generator, latents, noise, image latents, masked-image latents.
    let mut generators: Vec<TorchGenerator> =
        request.seeds.iter().map(|&s| TorchGenerator::new(s)).collect();
    let mut latents: Vec<Vec<f32>> = Vec::new();
    let mut noises: Vec<Vec<f32>> = Vec::new();
    let mut image_latents: Vec<Vec<f32>> = Vec::new();
    let mut masked_latents: Vec<Vec<f32>> = Vec::new();
    for generator in &mut generators {
        let image_latent = image_moments
            .as_ref()
            .map(|m| latent_from(m, encoder.output, c, encoder.scaling_factor, generator));
        let noise = generator.randn(per_image);
        let start = if strength_max {
            let sigma = scheduler.init_noise_sigma();
            noise.iter().map(|&n| n * sigma).collect()
        } else {
            let image_latent = image_latent.as_ref().ok_or_else(|| {
                DiffusionError::Failed("image latents missing for strength below 1".into())
            })?;
            scheduler.add_noise(image_latent, &noise, t_start)
        };
        masked_latents.push(latent_from(
            &masked_moments,
            encoder.output,
            c,
            encoder.scaling_factor,
            generator,
        ));
        latents.push(start);
        noises.push(noise);
        image_latents.push(image_latent.unwrap_or_default());
    }

    let timesteps: Vec<f64> = scheduler.timesteps().to_vec();
    let images = request.seeds.len();
    let max_batch = request.max_batch.max(1);
    let unet_channels = info.unet_in_channels;
    let plane = lh * lw;
    let entry = unet_channels * plane;
    let copies = if guided { 2 } else { 1 };
    // One bound UNet call per chunk of images, for all steps: the text embeddings and an
    // inpainting UNet's mask and masked-image channels are written once, not per step.
    let chunks: Vec<std::ops::Range<usize>> = (0..images)
        .step_by(max_batch)
        .map(|start| start..(start + max_batch).min(images))
        .collect();
    let mut calls = Vec::with_capacity(chunks.len());
    for chunk in &chunks {
        let k = chunk.len();
        let batch = k * copies;
        let mut hidden = Vec::with_capacity(batch * seq * dim);
        for copy in 0..copies {
            for _ in chunk.clone() {
                hidden.extend_from_slice(embedding(copy));
            }
        }
        let mut call =
            model.unet_call([batch, unet_channels, lh, lw], hidden, [batch, seq, dim])?;
        if nine {
            let sample = call.sample_mut();
            for copy in 0..copies {
                for (j, i) in chunk.clone().enumerate() {
                    let at = (copy * k + j) * entry + per_image;
                    sample[at..at + plane].copy_from_slice(&mask_latent);
                    sample[at + plane..at + plane + per_image].copy_from_slice(&masked_latents[i]);
                }
            }
        }
        calls.push(call);
    }
    drop(masked_latents);

    // The images' latents side by side, the layout the scheduler steps.
    let mut latents: Vec<f32> = latents.concat();
    let mut guided_out = vec![0f32; images * per_image];
    for (done, index) in (t_start..timesteps.len()).enumerate() {
        cancel.check()?;
        let t = timesteps[index];
        for (chunk, call) in chunks.iter().zip(calls.iter_mut()) {
            let k = chunk.len();
            let sample = call.sample_mut();
            for copy in 0..copies {
                for (j, i) in chunk.clone().enumerate() {
                    let at = (copy * k + j) * entry;
                    let scaled = &mut sample[at..at + per_image];
                    scaled.copy_from_slice(&latents[i * per_image..(i + 1) * per_image]);
                    scheduler.scale_model_input(scaled, index);
                }
            }
            if index + 1 == timesteps.len() {
                call.release_after_next_run();
            }
            call.run(t, |out| {
                for (j, i) in chunk.clone().enumerate() {
                    let target = &mut guided_out[i * per_image..(i + 1) * per_image];
                    let text = &out[(copies - 1) * k * per_image + j * per_image..][..per_image];
                    if guided {
                        let uncond = &out[j * per_image..(j + 1) * per_image];
                        for ((o, &u), &t) in target.iter_mut().zip(uncond).zip(text) {
                            *o = u + request.guidance * (t - u);
                        }
                    } else {
                        target.copy_from_slice(text);
                    }
                }
            })?;
        }
        let mut draw =
            || -> Vec<f32> { generators.iter_mut().flat_map(|g| g.randn(per_image)).collect() };
        latents =
            scheduler.step(Step { model_output: &guided_out, index, sample: &latents }, &mut draw);
        if !nine {
            for i in 0..images {
                let proper = if index + 1 < timesteps.len() {
                    scheduler.add_noise(&image_latents[i], &noises[i], index + 1)
                } else {
                    image_latents[i].clone()
                };
                let latent = &mut latents[i * per_image..(i + 1) * per_image];
                for (j, v) in latent.iter_mut().enumerate() {
                    let m = mask_latent[j % plane];
                    *v = (1.0 - m) * proper[j] + m * *v;
                }
            }
        }
        progress.step(StepProgress {
            image: 0,
            images: images as u32,
            step: (done + 1) as u32,
            steps: count as u32,
        });
    }
    drop(calls);

    let latents: Vec<Vec<f32>> = latents.chunks(per_image).map(<[f32]>::to_vec).collect();
    let mut out_images = Vec::with_capacity(images);
    for latent in &latents {
        cancel.check()?;
        let decoded = model.decode_latents(latent, lh, lw)?;
        out_images.push(to_image(&decoded, width, height));
    }
    Ok(InpaintOutput { images: out_images, latents })
}

/// `[1, 3, h, w]` in [-1, 1] to 8-bit RGB, as diffusers' postprocess and `numpy_to_pil`.
fn to_image(decoded: &[f32], width: usize, height: usize) -> RgbImage {
    let plane = width * height;
    RgbImage::from_fn(width as u32, height as u32, |x, y| {
        let i = y as usize * width + x as usize;
        let px = |c: usize| {
            let v = (decoded[c * plane + i] / 2.0 + 0.5).clamp(0.0, 1.0);
            (v * 255.0).round() as u8
        };
        image::Rgb([px(0), px(1), px(2)])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strength_picks_the_tail_of_the_schedule() {
        assert_eq!(strength_steps(20, 1.0), (0, 20));
        assert_eq!(strength_steps(20, 0.5), (10, 10));
        assert_eq!(strength_steps(10, 0.05), (10, 0));
    }
}
