//! DDIM with eta 0 (diffusers' `DDIMScheduler`): deterministic, no noise drawn.

use super::{
    integer_timesteps, predict_original, NoiseSource, Prediction, Scheduler, SchedulerConfig,
    SchedulerError, Spacing, Step,
};

/// DDIM.
#[derive(Debug, Clone)]
pub struct Ddim {
    alphas_cumprod: Vec<f32>,
    final_alpha: f32,
    timesteps: Vec<i64>,
    timesteps_f: Vec<f64>,
    step_ratio: i64,
    prediction: Prediction,
    clip: Option<f32>,
}

impl Ddim {
    /// DDIM for `steps` steps.
    pub fn new(config: &SchedulerConfig, steps: usize) -> Result<Self, SchedulerError> {
        let alphas_cumprod = config.alphas_cumprod()?;
        let train = config.train_steps();
        if steps > train {
            return Err(SchedulerError(format!("at most {train} steps")));
        }
        let final_alpha =
            if config.set_alpha_to_one.unwrap_or(true) { 1.0 } else { alphas_cumprod[0] };
        let timesteps = integer_timesteps(
            config.spacing(Spacing::Leading)?,
            train,
            steps,
            config.steps_offset.unwrap_or(0),
        );
        Ok(Ddim {
            final_alpha,
            timesteps_f: timesteps.iter().map(|&t| t as f64).collect(),
            timesteps,
            step_ratio: (train / steps) as i64,
            prediction: config.prediction()?,
            clip: config
                .clip_sample
                .unwrap_or(true)
                .then(|| config.clip_sample_range.unwrap_or(1.0)),
            alphas_cumprod,
        })
    }

    fn alpha_at(&self, t: i64) -> f32 {
        if t >= 0 {
            self.alphas_cumprod[t as usize]
        } else {
            self.final_alpha
        }
    }
}

impl Scheduler for Ddim {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps_f
    }

    fn step(&mut self, step: Step<'_>, _noise: &mut NoiseSource<'_>) -> Vec<f32> {
        let Step { model_output, index, sample } = step;
        let t = self.timesteps[index];
        let alpha = self.alpha_at(t);
        let alpha_prev = self.alpha_at(t - self.step_ratio);
        let (sa, sb) = (alpha.sqrt(), (1.0 - alpha).sqrt());
        let (sa_prev, sb_prev) = (alpha_prev.sqrt(), (1.0 - alpha_prev).sqrt());
        model_output
            .iter()
            .zip(sample)
            .map(|(&out, &x)| {
                let mut x0 = predict_original(self.prediction, out, x, sa, sb);
                let eps = match self.prediction {
                    Prediction::Epsilon => out,
                    Prediction::Sample => (x - sa * x0) / sb,
                    Prediction::VPrediction => sa * out + sb * x,
                };
                if let Some(range) = self.clip {
                    x0 = x0.clamp(-range, range);
                }
                sa_prev * x0 + sb_prev * eps
            })
            .collect()
    }

    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32> {
        let alpha = self.alphas_cumprod[self.timesteps[index] as usize];
        let (sa, sb) = (alpha.sqrt(), (1.0 - alpha).sqrt());
        original.iter().zip(noise).map(|(&x, &n)| sa * x + sb * n).collect()
    }
}
