//! Euler ancestral (diffusers' `EulerAncestralDiscreteScheduler`): an Euler step down to
//! a lower noise level, then fresh noise back up; draws noise at every step.

use super::{
    descending_linspace, integer_timesteps, NoiseSource, Prediction, Scheduler, SchedulerConfig,
    SchedulerError, Spacing, Step,
};

/// Euler ancestral.
#[derive(Debug, Clone)]
pub struct EulerAncestral {
    timesteps: Vec<f64>,
    /// One per timestep plus a final 0.
    sigmas: Vec<f32>,
    init_noise_sigma: f32,
    prediction: Prediction,
}

/// Timesteps as floats for the sigma-based schedulers, in descending order. Only
/// `linspace` differs from the integer timesteps: diffusers keeps its fractional values
/// (in f32) instead of rounding them; the other spacings are whole numbers, which f32
/// holds exactly.
pub(crate) fn float_timesteps(
    spacing: Spacing,
    train: usize,
    steps: usize,
    offset: usize,
) -> Vec<f64> {
    if spacing == Spacing::Linspace {
        // np.linspace(..., dtype=np.float32)
        return descending_linspace(train, steps).map(|v| f64::from(v as f32)).collect();
    }
    integer_timesteps(spacing, train, steps, offset).into_iter().map(|t| t as f64).collect()
}

/// `np.interp(x, arange(len(ys)), ys)` for x inside the table.
pub(crate) fn interp(x: f64, ys: &[f64]) -> f64 {
    let last = ys.len() - 1;
    if x <= 0.0 {
        return ys[0];
    }
    if x >= last as f64 {
        return ys[last];
    }
    let low = x.floor() as usize;
    let frac = x - low as f64;
    // NumPy's formula: slope * (x - x_lo) + y_lo.
    (ys[low + 1] - ys[low]) * frac + ys[low]
}

/// The training sigmas `sqrt((1 - a) / a)` in f32, as diffusers stores them.
pub(crate) fn train_sigmas(alphas_cumprod: &[f32]) -> Vec<f32> {
    alphas_cumprod.iter().map(|&a| ((1.0 - a) / a).sqrt()).collect()
}

impl EulerAncestral {
    /// Euler ancestral for `steps` steps.
    pub fn new(config: &SchedulerConfig, steps: usize) -> Result<Self, SchedulerError> {
        let alphas_cumprod = config.alphas_cumprod()?;
        let train = config.train_steps();
        let spacing = config.spacing(Spacing::Linspace)?;
        let timesteps = float_timesteps(spacing, train, steps, config.steps_offset.unwrap_or(0));
        let table: Vec<f64> = train_sigmas(&alphas_cumprod).into_iter().map(f64::from).collect();
        let mut sigmas: Vec<f32> = timesteps.iter().map(|&t| interp(t, &table) as f32).collect();
        sigmas.push(0.0);
        let max_sigma = sigmas.iter().copied().fold(0.0f32, f32::max);
        let init_noise_sigma = match spacing {
            Spacing::Linspace | Spacing::Trailing => max_sigma,
            Spacing::Leading => (max_sigma * max_sigma + 1.0).sqrt(),
        };
        Ok(EulerAncestral {
            timesteps: timesteps.iter().map(|&t| f64::from(t as f32)).collect(),
            sigmas,
            init_noise_sigma,
            prediction: config.prediction()?,
        })
    }
}

impl Scheduler for EulerAncestral {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn init_noise_sigma(&self) -> f32 {
        self.init_noise_sigma
    }

    fn scale_model_input(&self, sample: &mut [f32], index: usize) {
        let sigma = self.sigmas[index];
        let scale = (sigma * sigma + 1.0).sqrt();
        for v in sample {
            *v /= scale;
        }
    }

    fn step(&mut self, step: Step<'_>, noise: &mut NoiseSource<'_>) -> Vec<f32> {
        let Step { model_output, index, sample } = step;
        let sigma = self.sigmas[index];
        let sigma_to = self.sigmas[index + 1];
        let sigma_up =
            (sigma_to * sigma_to * (sigma * sigma - sigma_to * sigma_to) / (sigma * sigma)).sqrt();
        let sigma_down = (sigma_to * sigma_to - sigma_up * sigma_up).sqrt();
        let dt = sigma_down - sigma;
        let noise = noise();
        let v_scale = (sigma * sigma + 1.0).sqrt();
        let v_div = sigma * sigma + 1.0;
        model_output
            .iter()
            .zip(sample)
            .zip(&noise)
            .map(|((&out, &x), &n)| {
                let x0 = match self.prediction {
                    Prediction::Epsilon => x - sigma * out,
                    Prediction::VPrediction => out * (-sigma / v_scale) + x / v_div,
                    Prediction::Sample => out,
                };
                let derivative = (x - x0) / sigma;
                x + derivative * dt + n * sigma_up
            })
            .collect()
    }

    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32> {
        let sigma = self.sigmas[index];
        original.iter().zip(noise).map(|(&x, &n)| x + n * sigma).collect()
    }
}
