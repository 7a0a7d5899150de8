//! Noise schedulers: the configuration read from `scheduler/scheduler_config.json`, the
//! noise schedule shared by all of them, and one small trait the denoising loop drives.
//!
//! Each scheduler lives in its own file and reproduces the diffusers class of the same
//! name: its timesteps for a step count, its input scaling, its step update and its
//! `add_noise`. Indices rather than timestep values address the schedule, because the
//! pipeline always walks it in order (diffusers does the same once `set_begin_index` has
//! been called, which its inpainting pipeline always does).

mod ddim;
mod dpm;
mod euler_ancestral;
mod lcm;

pub use ddim::Ddim;
pub use dpm::DpmSolverMultistep;
pub use euler_ancestral::EulerAncestral;
pub use lcm::Lcm;

use serde::Deserialize;
use std::fmt;
use std::str::FromStr;

/// `scheduler_config.json` as diffusers writes it. Missing keys take the chosen
/// scheduler's own defaults, exactly as diffusers' `from_config` does.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct SchedulerConfig {
    /// The diffusers class the checkpoint ships with.
    #[serde(rename = "_class_name")]
    pub class_name: Option<String>,
    /// Training timesteps (1000).
    pub num_train_timesteps: Option<usize>,
    /// First beta.
    pub beta_start: Option<f64>,
    /// Last beta.
    pub beta_end: Option<f64>,
    /// `linear`, `scaled_linear` or `squaredcos_cap_v2`.
    pub beta_schedule: Option<String>,
    /// `epsilon`, `v_prediction` or `sample`.
    pub prediction_type: Option<String>,
    /// `leading`, `linspace` or `trailing`.
    pub timestep_spacing: Option<String>,
    /// Added to `leading` timesteps.
    pub steps_offset: Option<usize>,
    /// Clip the predicted clean sample.
    pub clip_sample: Option<bool>,
    /// Range of that clip.
    pub clip_sample_range: Option<f32>,
    /// Whether the step past the last uses alpha 1.
    pub set_alpha_to_one: Option<bool>,
    /// Dynamic thresholding (pixel-space models only; refused here).
    pub thresholding: Option<bool>,
    /// Rescale betas to zero terminal SNR.
    pub rescale_betas_zero_snr: Option<bool>,
    /// Karras sigmas (DPM-Solver).
    pub use_karras_sigmas: Option<bool>,
    /// DPM-Solver order (2 for 2M).
    pub solver_order: Option<usize>,
    /// DPM-Solver variant (`dpmsolver++`).
    pub algorithm_type: Option<String>,
    /// DPM-Solver: first order at the last steps.
    pub lower_order_final: Option<bool>,
    /// DPM-Solver: `zero` or `sigma_min`.
    pub final_sigmas_type: Option<String>,
    /// LCM: the schedule the model was distilled on.
    pub original_inference_steps: Option<usize>,
    /// LCM: boundary condition scaling.
    pub timestep_scaling: Option<f32>,
}

/// How the model's output is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prediction {
    /// The noise.
    Epsilon,
    /// The velocity (SD 2.x 768 models).
    VPrediction,
    /// The clean sample.
    Sample,
}

/// Timestep spacing for a step count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spacing {
    /// `np.linspace(0, T-1, n)`.
    Linspace,
    /// Multiples of `T / n` from 0, plus the offset.
    Leading,
    /// Multiples of `T / n` from the end.
    Trailing,
}

/// Why a scheduler cannot be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("scheduler: {0}")]
pub struct SchedulerError(pub String);

impl SchedulerConfig {
    pub(crate) fn train_steps(&self) -> usize {
        self.num_train_timesteps.unwrap_or(1000)
    }

    pub(crate) fn prediction(&self) -> Result<Prediction, SchedulerError> {
        match self.prediction_type.as_deref().unwrap_or("epsilon") {
            "epsilon" => Ok(Prediction::Epsilon),
            "v_prediction" => Ok(Prediction::VPrediction),
            "sample" => Ok(Prediction::Sample),
            other => Err(SchedulerError(format!("unknown prediction_type '{other}'"))),
        }
    }

    pub(crate) fn spacing(&self, default: Spacing) -> Result<Spacing, SchedulerError> {
        match self.timestep_spacing.as_deref() {
            None => Ok(default),
            Some("linspace") => Ok(Spacing::Linspace),
            Some("leading") => Ok(Spacing::Leading),
            Some("trailing") => Ok(Spacing::Trailing),
            Some(other) => Err(SchedulerError(format!("unknown timestep_spacing '{other}'"))),
        }
    }

    /// The cumulative product of alphas, as diffusers computes it (f32 values).
    pub(crate) fn alphas_cumprod(&self) -> Result<Vec<f32>, SchedulerError> {
        if self.thresholding == Some(true) {
            return Err(SchedulerError(
                "dynamic thresholding is for pixel-space models; latent models do not use it"
                    .into(),
            ));
        }
        let t = self.train_steps();
        let start = self.beta_start.unwrap_or(0.0001);
        let end = self.beta_end.unwrap_or(0.02);
        let betas: Vec<f32> = match self.beta_schedule.as_deref().unwrap_or("linear") {
            "linear" => linspace_f32(start, end, t),
            "scaled_linear" => {
                linspace_f32(start.sqrt(), end.sqrt(), t).into_iter().map(|b| b * b).collect()
            }
            "squaredcos_cap_v2" => {
                let alpha_bar =
                    |x: f64| ((x + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2).cos().powi(2);
                (0..t)
                    .map(|i| {
                        let t1 = i as f64 / t as f64;
                        let t2 = (i + 1) as f64 / t as f64;
                        (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(0.999) as f32
                    })
                    .collect()
            }
            other => return Err(SchedulerError(format!("unknown beta_schedule '{other}'"))),
        };
        let mut cumprod = Vec::with_capacity(t);
        let mut acc = 1.0f64;
        for b in &betas {
            acc *= f64::from(1.0 - b);
            cumprod.push(acc as f32);
        }
        if self.rescale_betas_zero_snr == Some(true) {
            cumprod = rescale_zero_terminal_snr(&cumprod);
        }
        Ok(cumprod)
    }
}

/// diffusers' `rescale_zero_terminal_snr`, applied to the cumulative alphas.
fn rescale_zero_terminal_snr(cumprod: &[f32]) -> Vec<f32> {
    let sqrt: Vec<f64> = cumprod.iter().map(|&a| f64::from(a).sqrt()).collect();
    let first = sqrt[0];
    let last = sqrt[sqrt.len() - 1];
    let scaled: Vec<f64> = sqrt.iter().map(|&s| (s - last) * first / (first - last)).collect();
    let mut out: Vec<f32> = scaled.iter().map(|s| (s * s) as f32).collect();
    // Keep the last alpha a hair above zero, as diffusers does, so 1/alpha stays finite.
    if let Some(last) = out.last_mut() {
        *last = 2f32.powi(-24);
    }
    out
}

/// `torch.linspace(start, end, n)` in f32.
fn linspace_f32(start: f64, end: f64, n: usize) -> Vec<f32> {
    linspace(start, end, n).into_iter().map(|v| v as f32).collect()
}

/// `np.linspace(start, end, n)` (endpoint included).
pub(crate) fn linspace(start: f64, end: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![start];
    }
    let step = (end - start) / (n - 1) as f64;
    (0..n).map(|i| if i == n - 1 { end } else { start + step * i as f64 }).collect()
}

/// `steps` points spread evenly over the training timesteps, last first: the `linspace`
/// spacing before rounding.
pub(crate) fn descending_linspace(train: usize, steps: usize) -> impl Iterator<Item = f64> {
    linspace(0.0, (train - 1) as f64, steps).into_iter().rev()
}

/// Integer timesteps for a spacing, in descending order (DDIM, LCM-style schedules).
pub(crate) fn integer_timesteps(
    spacing: Spacing,
    train: usize,
    steps: usize,
    offset: usize,
) -> Vec<i64> {
    match spacing {
        Spacing::Linspace => {
            descending_linspace(train, steps).map(|v| round_half_even(v) as i64).collect()
        }
        Spacing::Leading => {
            let ratio = train / steps;
            (0..steps).rev().map(|i| (i * ratio + offset) as i64).collect()
        }
        Spacing::Trailing => {
            // np.arange(T, 0, -T/n): n values, each computed from its index.
            let ratio = train as f64 / steps as f64;
            (0..steps)
                .map(|i| round_half_even(train as f64 - i as f64 * ratio) as i64 - 1)
                .collect()
        }
    }
}

/// NumPy's rounding: halves go to the even neighbour.
pub(crate) fn round_half_even(v: f64) -> f64 {
    let r = v.round();
    if (v - v.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
        r - v.signum()
    } else {
        r
    }
}

/// Fresh noise for the whole batch, drawn on demand so that draws happen in diffusers'
/// order (only schedulers that need noise call it).
pub type NoiseSource<'a> = dyn FnMut() -> Vec<f32> + 'a;

/// What one denoising step starts from: the latents at step `index` of the schedule and
/// the (guided) model output for them.
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    /// The UNet's output (noise, or `v`, as the model predicts).
    pub model_output: &'a [f32],
    /// Position in [`Scheduler::timesteps`].
    pub index: usize,
    /// The latents at that step.
    pub sample: &'a [f32],
}

/// What the denoising loop needs from a scheduler.
pub trait Scheduler: Send {
    /// The timesteps of the full schedule, as the UNet receives them.
    fn timesteps(&self) -> &[f64];
    /// The scale of the initial noise: 1 for the schedulers that work in alphas (DDIM,
    /// DPM-Solver, LCM), as in diffusers; the sigma-based ones start from their largest
    /// sigma.
    fn init_noise_sigma(&self) -> f32 {
        1.0
    }
    /// Scales the UNet input at step `index`. The alpha-based schedulers feed the sample
    /// as it is, as diffusers' `scale_model_input` does for them.
    fn scale_model_input(&self, _sample: &mut [f32], _index: usize) {}
    /// One step from the step's sample given the (guided) model output; the ancestral
    /// schedulers draw fresh noise from `noise`.
    fn step(&mut self, step: Step<'_>, noise: &mut NoiseSource<'_>) -> Vec<f32>;
    /// Noises `original` to the noise level of step `index`.
    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32>;
}

/// The schedulers users can choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchedulerKind {
    /// DDIM (eta 0).
    Ddim,
    /// Euler ancestral.
    EulerAncestral,
    /// DPM-Solver++ 2M.
    DpmPlusPlus2M,
    /// DPM-Solver++ 2M with Karras sigmas.
    DpmPlusPlus2MKarras,
    /// Latent consistency (LCM models and LCM-LoRA).
    Lcm,
}

impl SchedulerKind {
    /// Every name, as accepted by [`FromStr`].
    pub const NAMES: &'static [&'static str] = backdrop_core::SCHEDULERS;

    /// The name as users write it.
    pub fn as_str(self) -> &'static str {
        match self {
            SchedulerKind::Ddim => "ddim",
            SchedulerKind::EulerAncestral => "euler-a",
            SchedulerKind::DpmPlusPlus2M => "dpm++2m",
            SchedulerKind::DpmPlusPlus2MKarras => "dpm++2m-karras",
            SchedulerKind::Lcm => "lcm",
        }
    }

    /// The scheduler a checkpoint ships with, by its diffusers class; DPM-Solver++ 2M for
    /// classes not implemented here (PNDM, LMS, ...), a good default at 20-30 steps.
    pub fn from_class(class: Option<&str>, config: &SchedulerConfig) -> SchedulerKind {
        match class {
            Some("DDIMScheduler") => SchedulerKind::Ddim,
            Some("EulerAncestralDiscreteScheduler") => SchedulerKind::EulerAncestral,
            Some("LCMScheduler") => SchedulerKind::Lcm,
            _ if config.use_karras_sigmas == Some(true) => SchedulerKind::DpmPlusPlus2MKarras,
            _ => SchedulerKind::DpmPlusPlus2M,
        }
    }

    /// Builds the scheduler with the checkpoint's configuration for `steps` steps.
    pub fn build(
        self,
        config: &SchedulerConfig,
        steps: usize,
    ) -> Result<Box<dyn Scheduler>, SchedulerError> {
        if steps == 0 {
            return Err(SchedulerError("at least one step is needed".into()));
        }
        Ok(match self {
            SchedulerKind::Ddim => Box::new(Ddim::new(config, steps)?),
            SchedulerKind::EulerAncestral => Box::new(EulerAncestral::new(config, steps)?),
            SchedulerKind::DpmPlusPlus2M => {
                Box::new(DpmSolverMultistep::new(config, steps, Some(false))?)
            }
            SchedulerKind::DpmPlusPlus2MKarras => {
                Box::new(DpmSolverMultistep::new(config, steps, Some(true))?)
            }
            SchedulerKind::Lcm => Box::new(Lcm::new(config, steps)?),
        })
    }
}

impl fmt::Display for SchedulerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SchedulerKind {
    type Err = String;
    /// The names and aliases are the core's ([`backdrop_core::scheduler_name`]), so a
    /// name refused at submit is exactly one this would refuse.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match backdrop_core::scheduler_name(s) {
            Some("ddim") => Ok(SchedulerKind::Ddim),
            Some("euler-a") => Ok(SchedulerKind::EulerAncestral),
            Some("dpm++2m") => Ok(SchedulerKind::DpmPlusPlus2M),
            Some("dpm++2m-karras") => Ok(SchedulerKind::DpmPlusPlus2MKarras),
            Some("lcm") => Ok(SchedulerKind::Lcm),
            _ => Err(format!(
                "unknown scheduler '{s}' (expected one of {})",
                SchedulerKind::NAMES.join(", ")
            )),
        }
    }
}

/// The predicted clean sample from an epsilon/v/sample output given
/// `sqrt(alpha_cumprod)` and `sqrt(1 - alpha_cumprod)`.
pub(crate) fn predict_original(
    prediction: Prediction,
    model_output: f32,
    sample: f32,
    sqrt_alpha: f32,
    sqrt_beta: f32,
) -> f32 {
    match prediction {
        Prediction::Epsilon => (sample - sqrt_beta * model_output) / sqrt_alpha,
        Prediction::Sample => model_output,
        Prediction::VPrediction => sqrt_alpha * sample - sqrt_beta * model_output,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for name in SchedulerKind::NAMES {
            let kind: SchedulerKind = name.parse().expect("known name");
            assert_eq!(kind.as_str(), *name);
        }
        assert!("pndm".parse::<SchedulerKind>().is_err());
    }

    #[test]
    fn numpy_rounding_goes_to_even() {
        assert_eq!(round_half_even(2.5), 2.0);
        assert_eq!(round_half_even(3.5), 4.0);
        assert_eq!(round_half_even(-0.5), -0.0);
        assert_eq!(round_half_even(1.4), 1.0);
    }
}
