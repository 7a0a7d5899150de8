//! Latent consistency (diffusers' `LCMScheduler`): each step predicts the clean latent
//! through the consistency boundary condition and re-noises it to the next timestep,
//! drawing noise at every step but the last.

use super::Prediction;
use super::{predict_original, NoiseSource, Scheduler, SchedulerConfig, SchedulerError, Step};

/// LCM.
#[derive(Debug, Clone)]
pub struct Lcm {
    alphas_cumprod: Vec<f32>,
    final_alpha: f32,
    timesteps: Vec<i64>,
    timesteps_f: Vec<f64>,
    prediction: Prediction,
    clip: Option<f32>,
    timestep_scaling: f32,
}

impl Lcm {
    /// LCM for `steps` steps.
    pub fn new(config: &SchedulerConfig, steps: usize) -> Result<Self, SchedulerError> {
        let alphas_cumprod = config.alphas_cumprod()?;
        let train = config.train_steps();
        let original = config.original_inference_steps.unwrap_or(50);
        if steps > original {
            return Err(SchedulerError(format!(
                "LCM takes at most {original} steps (original_inference_steps)"
            )));
        }
        let k = train / original;
        let origin: Vec<i64> = (1..=original).rev().map(|i| (i * k) as i64 - 1).collect();
        // np.floor(np.linspace(0, len, num=steps, endpoint=False))
        let timesteps: Vec<i64> = (0..steps)
            .map(|i| {
                let index = (i as f64 * (origin.len() as f64 / steps as f64)).floor() as usize;
                origin[index]
            })
            .collect();
        Ok(Lcm {
            final_alpha: if config.set_alpha_to_one.unwrap_or(true) {
                1.0
            } else {
                alphas_cumprod[0]
            },
            timesteps_f: timesteps.iter().map(|&t| t as f64).collect(),
            timesteps,
            prediction: config.prediction()?,
            clip: config
                .clip_sample
                .unwrap_or(false)
                .then(|| config.clip_sample_range.unwrap_or(1.0)),
            timestep_scaling: config.timestep_scaling.unwrap_or(10.0),
            alphas_cumprod,
        })
    }
}

impl Scheduler for Lcm {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps_f
    }

    fn step(&mut self, step: Step<'_>, noise: &mut NoiseSource<'_>) -> Vec<f32> {
        let Step { model_output, index, sample } = step;
        let t = self.timesteps[index];
        let last = index + 1 >= self.timesteps.len();
        let prev_t = if last { t } else { self.timesteps[index + 1] };
        let alpha = self.alphas_cumprod[t as usize];
        let alpha_prev =
            if prev_t >= 0 { self.alphas_cumprod[prev_t as usize] } else { self.final_alpha };
        let (sa, sb) = (alpha.sqrt(), (1.0 - alpha).sqrt());
        let scaled = t as f32 * self.timestep_scaling;
        let sigma_data = 0.5f32;
        let c_skip = sigma_data * sigma_data / (scaled * scaled + sigma_data * sigma_data);
        let c_out = scaled / (scaled * scaled + sigma_data * sigma_data).sqrt();
        let denoised: Vec<f32> = model_output
            .iter()
            .zip(sample)
            .map(|(&out, &x)| {
                let mut x0 = predict_original(self.prediction, out, x, sa, sb);
                if let Some(range) = self.clip {
                    x0 = x0.clamp(-range, range);
                }
                c_out * x0 + c_skip * x
            })
            .collect();
        if last {
            return denoised;
        }
        let noise = noise();
        let (sa_prev, sb_prev) = (alpha_prev.sqrt(), (1.0 - alpha_prev).sqrt());
        denoised.iter().zip(&noise).map(|(&d, &n)| sa_prev * d + sb_prev * n).collect()
    }

    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32> {
        let alpha = self.alphas_cumprod[self.timesteps[index] as usize];
        let (sa, sb) = (alpha.sqrt(), (1.0 - alpha).sqrt());
        original.iter().zip(noise).map(|(&x, &n)| sa * x + sb * n).collect()
    }
}
