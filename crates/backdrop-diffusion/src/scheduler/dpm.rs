//! DPM-Solver++ multistep (diffusers' `DPMSolverMultistepScheduler` with
//! `algorithm_type = "dpmsolver++"`, midpoint solver), order 2 by default ("2M"), with
//! optional Karras sigmas. Deterministic: no noise drawn.

use super::euler_ancestral::{interp, train_sigmas};
use super::{
    linspace, round_half_even, NoiseSource, Prediction, Scheduler, SchedulerConfig, SchedulerError,
    Spacing, Step,
};

/// DPM-Solver++ (2M).
#[derive(Debug, Clone)]
pub struct DpmSolverMultistep {
    timesteps: Vec<f64>,
    /// One per timestep plus the final sigma.
    sigmas: Vec<f32>,
    prediction: Prediction,
    order: usize,
    lower_order_final: bool,
    final_zero: bool,
    /// Converted outputs of the last steps, newest last.
    history: Vec<Vec<f32>>,
    lower_order_nums: usize,
}

/// `(alpha_t, sigma_t)` of a sigma.
fn alpha_sigma(sigma: f32) -> (f32, f32) {
    let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
    (alpha, sigma * alpha)
}

fn lambda(alpha: f32, sigma: f32) -> f32 {
    alpha.ln() - sigma.ln()
}

/// diffusers' `_sigma_to_t`: the fractional training timestep of a sigma.
fn sigma_to_t(sigma: f64, log_sigmas: &[f64]) -> f64 {
    let log_sigma = sigma.max(1e-10).ln();
    // argmax of the cumulative count of (distance >= 0): the last such index, else 0.
    let low = log_sigmas
        .iter()
        .rposition(|&l| log_sigma - l >= 0.0)
        .unwrap_or(0)
        .min(log_sigmas.len() - 2);
    let (lo, hi) = (log_sigmas[low], log_sigmas[low + 1]);
    let w = ((lo - log_sigma) / (lo - hi)).clamp(0.0, 1.0);
    (1.0 - w) * low as f64 + w * (low + 1) as f64
}

impl DpmSolverMultistep {
    /// DPM-Solver++ for `steps` steps; `karras` overrides the config's
    /// `use_karras_sigmas` when given.
    pub fn new(
        config: &SchedulerConfig,
        steps: usize,
        karras: Option<bool>,
    ) -> Result<Self, SchedulerError> {
        match config.algorithm_type.as_deref() {
            None | Some("dpmsolver++") => {}
            Some(other) => {
                return Err(SchedulerError(format!(
                    "algorithm_type '{other}' is not supported (dpmsolver++ is)"
                )))
            }
        }
        let alphas_cumprod = config.alphas_cumprod()?;
        let train = config.train_steps();
        let offset = config.steps_offset.unwrap_or(0);
        let mut timesteps: Vec<f64> = match config.spacing(Spacing::Linspace)? {
            Spacing::Linspace => {
                let mut t: Vec<f64> = linspace(0.0, (train - 1) as f64, steps + 1)
                    .into_iter()
                    .map(round_half_even)
                    .rev()
                    .collect();
                t.pop();
                t
            }
            Spacing::Leading => {
                let ratio = train / (steps + 1);
                (1..=steps).rev().map(|i| (i * ratio + offset) as f64).collect()
            }
            Spacing::Trailing => {
                let ratio = train as f64 / steps as f64;
                (0..steps).map(|i| round_half_even(train as f64 - i as f64 * ratio) - 1.0).collect()
            }
        };
        let table = train_sigmas(&alphas_cumprod);
        let table64: Vec<f64> = table.iter().map(|&s| f64::from(s)).collect();
        let final_zero = match config.final_sigmas_type.as_deref().unwrap_or("zero") {
            "zero" => true,
            "sigma_min" => false,
            other => return Err(SchedulerError(format!("unknown final_sigmas_type '{other}'"))),
        };
        let use_karras = karras.unwrap_or(config.use_karras_sigmas.unwrap_or(false));
        let mut sigmas: Vec<f64>;
        let last;
        if use_karras {
            // np.log of the f32 table stays f32.
            let log_sigmas: Vec<f64> = table.iter().map(|s| f64::from(s.ln())).collect();
            let sigma_min = table64[0];
            let sigma_max = table64[table64.len() - 1];
            let rho = 7.0;
            let (min_inv, max_inv) = (sigma_min.powf(1.0 / rho), sigma_max.powf(1.0 / rho));
            sigmas = linspace(0.0, 1.0, steps)
                .into_iter()
                .map(|r| (max_inv + r * (min_inv - max_inv)).powf(rho))
                .collect();
            timesteps =
                sigmas.iter().map(|&s| round_half_even(sigma_to_t(s, &log_sigmas))).collect();
            last = if final_zero { 0.0 } else { sigmas[sigmas.len() - 1] };
        } else {
            sigmas = timesteps.iter().map(|&t| interp(t, &table64)).collect();
            last = if final_zero {
                0.0
            } else {
                let a = f64::from(alphas_cumprod[0]);
                ((1.0 - a) / a).sqrt()
            };
        }
        sigmas.push(last);
        let order = config.solver_order.unwrap_or(2);
        if !(1..=2).contains(&order) {
            return Err(SchedulerError(format!("solver_order {order} is not supported (1 or 2)")));
        }
        Ok(DpmSolverMultistep {
            timesteps,
            sigmas: sigmas.into_iter().map(|s| s as f32).collect(),
            prediction: config.prediction()?,
            order,
            lower_order_final: config.lower_order_final.unwrap_or(true),
            final_zero,
            history: Vec::new(),
            lower_order_nums: 0,
        })
    }
}

impl Scheduler for DpmSolverMultistep {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn step(&mut self, step: Step<'_>, _noise: &mut NoiseSource<'_>) -> Vec<f32> {
        let Step { model_output, index, sample } = step;
        let n = self.timesteps.len();
        let lower_order_final =
            index == n - 1 && ((self.lower_order_final && n < 15) || self.final_zero);
        let lower_order_second = index + 2 == n && self.lower_order_final && n < 15;
        let (alpha_s0, sigma_s0) = alpha_sigma(self.sigmas[index]);
        let x0: Vec<f32> = model_output
            .iter()
            .zip(sample)
            .map(|(&out, &x)| match self.prediction {
                Prediction::Epsilon => (x - sigma_s0 * out) / alpha_s0,
                Prediction::Sample => out,
                Prediction::VPrediction => alpha_s0 * x - sigma_s0 * out,
            })
            .collect();
        self.history.push(x0);
        if self.history.len() > self.order {
            self.history.remove(0);
        }
        let (alpha_t, sigma_t) = alpha_sigma(self.sigmas[index + 1]);
        let lambda_t = lambda(alpha_t, sigma_t);
        let lambda_s0 = lambda(alpha_s0, sigma_s0);
        let h = lambda_t - lambda_s0;
        let ratio = sigma_t / sigma_s0;
        let coef = alpha_t * ((-h).exp() - 1.0);
        let m0 = &self.history[self.history.len() - 1];
        let first_order = self.order == 1 || self.lower_order_nums < 1 || lower_order_final;
        let out = if first_order {
            sample.iter().zip(m0).map(|(&x, &d0)| ratio * x - coef * d0).collect()
        } else {
            debug_assert!(self.order == 2 || lower_order_second);
            let m1 = &self.history[self.history.len() - 2];
            let (alpha_s1, sigma_s1) = alpha_sigma(self.sigmas[index - 1]);
            let h0 = lambda_s0 - lambda(alpha_s1, sigma_s1);
            let r0 = h0 / h;
            sample
                .iter()
                .zip(m0)
                .zip(m1)
                .map(|((&x, &d0), &d_1)| {
                    let d1 = (1.0 / r0) * (d0 - d_1);
                    ratio * x - coef * d0 - 0.5 * coef * d1
                })
                .collect()
        };
        if self.lower_order_nums < self.order {
            self.lower_order_nums += 1;
        }
        out
    }

    fn add_noise(&self, original: &[f32], noise: &[f32], index: usize) -> Vec<f32> {
        let (alpha, sigma) = alpha_sigma(self.sigmas[index]);
        original.iter().zip(noise).map(|(&x, &n)| alpha * x + sigma * n).collect()
    }
}
