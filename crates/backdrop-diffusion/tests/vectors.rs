//! Recorded vectors from PyTorch, transformers and diffusers (written by
//! `tools/diffusion/make_fixtures.py vectors`): the generator, the tokenizer and the
//! schedulers must reproduce them. No ONNX Runtime needed.

use backdrop_diffusion::rng::TorchGenerator;
use backdrop_diffusion::scheduler::{SchedulerConfig, SchedulerKind, Step};
use backdrop_diffusion::tokenizer::ClipTokenizer;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn load(name: &str) -> Value {
    let text = std::fs::read_to_string(fixtures().join(name)).expect("fixture file");
    serde_json::from_str(&text).expect("fixture JSON")
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number") as f32).collect()
}

/// Largest difference relative to max(1, |expected|).
fn worst(actual: &[f32], expected: &[f32]) -> f32 {
    assert_eq!(actual.len(), expected.len(), "lengths differ");
    actual.iter().zip(expected).map(|(a, e)| (a - e).abs() / e.abs().max(1.0)).fold(0.0, f32::max)
}

#[test]
fn generator_reproduces_torch_randn_for_every_size_and_sequence() {
    let records = load("rng.json");
    let mut checked = 0;
    for record in records.as_array().expect("records") {
        let seed = record["seed"].as_u64().expect("seed");
        let mut generator = TorchGenerator::new(seed);
        for draw in record["draws"].as_array().expect("draws") {
            let expected = floats(&draw["values"]);
            let actual = generator.randn(expected.len());
            let err = worst(&actual, &expected);
            assert!(err < 2e-6, "seed {seed} shape {}: error {err}", draw["shape"]);
            checked += expected.len();
        }
    }
    assert!(checked > 300, "too few values checked: {checked}");
}

#[test]
fn tokenizer_ids_match_clip_tokenizer() {
    let records = load("tokenizer.json");
    let mut prompts = 0;
    for (model, cases) in records.as_object().expect("models") {
        let tokenizer =
            ClipTokenizer::from_dir(&fixtures().join("models").join(model).join("tokenizer"))
                .expect("tokenizer loads");
        for case in cases.as_array().expect("cases") {
            let prompt = case["prompt"].as_str().expect("prompt");
            let expected: Vec<u32> = case["ids"]
                .as_array()
                .expect("ids")
                .iter()
                .map(|v| v.as_u64().expect("id") as u32)
                .collect();
            let actual = tokenizer.encode(prompt).expect("encodes");
            assert_eq!(actual, expected, "{model}: {prompt:?}");
            prompts += 1;
        }
    }
    assert!(prompts >= 18);
}

#[test]
fn schedulers_match_diffusers_timesteps_noise_and_steps() {
    let records = load("schedulers.json");
    let mut kinds = std::collections::HashSet::new();
    for (n, record) in records.as_array().expect("records").iter().enumerate() {
        let kind: SchedulerKind =
            record["scheduler"].as_str().expect("name").parse().expect("kind");
        kinds.insert(kind);
        let config: SchedulerConfig =
            serde_json::from_value(record["config"].clone()).expect("config");
        let steps = record["steps"].as_u64().expect("steps") as usize;
        let label = format!("#{n} {kind} {}", record["config"]);
        let mut scheduler = kind.build(&config, steps).expect("builds");

        let expected_t: Vec<f64> = record["timesteps"]
            .as_array()
            .expect("t")
            .iter()
            .map(|t| t.as_f64().expect("t"))
            .collect();
        let actual_t = scheduler.timesteps().to_vec();
        assert_eq!(actual_t.len(), expected_t.len(), "{label}: timestep count");
        for (a, e) in actual_t.iter().zip(&expected_t) {
            assert!((a - e).abs() < 1e-3, "{label}: timesteps {actual_t:?} vs {expected_t:?}");
        }
        let sigma = record["init_noise_sigma"].as_f64().expect("sigma") as f32;
        assert!(
            (scheduler.init_noise_sigma() - sigma).abs() <= 1e-5 * sigma.max(1.0),
            "{label}: init_noise_sigma {} vs {sigma}",
            scheduler.init_noise_sigma()
        );

        let original = floats(&record["original"]);
        let noise = floats(&record["noise"]);
        for (i, added) in record["added"].as_array().expect("added").iter().enumerate() {
            let err = worst(&scheduler.add_noise(&original, &noise, i), &floats(added));
            assert!(err < 1e-5, "{label}: add_noise at {i}: {err}");
        }

        let mut generator = TorchGenerator::new(record["generator_seed"].as_u64().expect("seed"));
        let mut sample = floats(&record["initial"]);
        for (i, step) in record["steps_out"].as_array().expect("steps").iter().enumerate() {
            let mut scaled = sample.clone();
            scheduler.scale_model_input(&mut scaled, i);
            let err = worst(&scaled, &floats(&step["scaled"]));
            assert!(err < 1e-4, "{label}: scale_model_input at {i}: {err}");
            let model_output = floats(&step["model_output"]);
            let len = sample.len();
            let mut draw = || generator.randn(len);
            sample = scheduler
                .step(Step { model_output: &model_output, index: i, sample: &sample }, &mut draw);
            let err = worst(&sample, &floats(&step["prev"]));
            assert!(err < 1e-4, "{label}: step {i}: {err}");
        }
    }
    assert_eq!(kinds.len(), SchedulerKind::NAMES.len(), "every scheduler has vectors");
}
