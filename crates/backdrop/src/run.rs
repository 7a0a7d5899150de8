//! Running the subcommands.

use crate::cli::{Cli, Command, CommonArgs, CutoutArgs, ExpandArgs, GenerateArgs};
use crate::output::StagedOutput;
use backdrop_core::{
    BackgroundSpec, CancelToken, CutoutSpec, EngineOptions, ErrorCode, ExpansionRatios,
    ExpansionSpec, StepProgress, SCENES,
};
use backdrop_engines::pipeline::{
    cut_out, encode_cutout, render, run_background, run_expansion, BackgroundJob, ExpansionJob,
    JobError, JobOutput, RenderOptions, ResultFile,
};
use backdrop_engines::Engines;
use backdrop_imaging::preview::DEFAULT_PREVIEW_SIDE;
use backdrop_imaging::{decode, DecodeLimits, DecodedImage, InputError};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};
use std::fmt;
use std::io::{IsTerminal, Read};
use std::path::Path;
use std::time::Instant;

/// Why a command failed: one line for the user, a stable code when there is one, and the
/// exit status.
#[derive(Debug)]
pub struct Failure {
    message: String,
    code: ErrorCode,
    status: u8,
}

impl Failure {
    fn input(message: impl Into<String>, code: ErrorCode) -> Self {
        Failure { message: message.into(), code, status: 2 }
    }

    fn service(message: String) -> Self {
        Failure { message, code: ErrorCode::ServiceFailed, status: 1 }
    }

    fn output(message: impl Into<String>) -> Self {
        Failure { message: message.into(), code: ErrorCode::OutputFailed, status: 1 }
    }

    /// The process exit status.
    pub fn exit_status(&self) -> u8 {
        self.status
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}]", self.message, self.code)
    }
}

impl From<JobError> for Failure {
    fn from(e: JobError) -> Self {
        let status = match e {
            JobError::Spec(_) | JobError::Input(_) => 2,
            JobError::Engine(backdrop_core::EngineError::Unsupported { .. }) => 2,
            JobError::Engine(_) | JobError::Encode(_) => 1,
        };
        Failure { message: e.to_string(), code: e.code(), status }
    }
}

/// Runs one command.
pub fn dispatch(cli: Cli) -> Result<(), Failure> {
    let config = crate::config::Config::load(cli.config.as_deref())
        .map_err(|e| Failure::input(e, ErrorCode::InvalidConfig))?;
    // `--model PATH` runs an exported folder without a configuration entry.
    let config = match &cli.command {
        Command::Generate(a) => crate::models::with_model_path(config, &a.common.diffusion),
        Command::Expand(a) => crate::models::with_model_path(config, &a.common.diffusion),
        _ => config,
    };
    let engines = || {
        crate::models::engines(&config).map_err(|e| Failure::input(e, ErrorCode::EngineSetupFailed))
    };
    match cli.command {
        Command::Generate(args) => generate(args, &engines()?),
        Command::Expand(args) => expand(args, &engines()?),
        Command::Cutout(args) => cutout(args, &engines()?),
        Command::Models(command) => {
            let lines = crate::models::run(&config, command).map_err(|e| Failure {
                message: e,
                code: ErrorCode::EngineSetupFailed,
                status: 1,
            })?;
            for line in lines {
                println!("{line}");
            }
            Ok(())
        }
        Command::Serve(args) => {
            crate::serve::serve(&config, engines()?, args).map_err(Failure::service)
        }
        Command::Worker(args) => {
            crate::serve::worker(&config, engines()?, args).map_err(Failure::service)
        }
        Command::Keys(command) => {
            for line in crate::serve::keys(&config, command).map_err(Failure::service)? {
                println!("{line}");
            }
            Ok(())
        }
        Command::Scenes { json } => {
            scenes(json);
            Ok(())
        }
    }
}

fn scenes(as_json: bool) {
    if as_json {
        let list: Vec<Value> = SCENES
            .iter()
            .map(|s| json!({"id": s.id, "name": s.name, "description": s.description, "keywords": s.keywords}))
            .collect();
        println!("{}", Value::Array(list));
        return;
    }
    let width = SCENES.iter().map(|s| s.id.len()).max().unwrap_or(0);
    for s in SCENES {
        println!("{:width$}  {}: {}", s.id, s.name, s.description);
    }
}

fn generate(args: GenerateArgs, engines: &Engines) -> Result<(), Failure> {
    let started = Instant::now();
    let spec = BackgroundSpec {
        prompt: args.prompt,
        scene: args.scene,
        negative_prompt: args.negative,
        n: args.common.n,
        seed: args.common.seed,
        size: args.size,
        resize_mode: args.resize_mode,
        framing: args.framing.framing().map_err(JobError::from)?,
        cutout: args.cutout,
        ..Default::default()
    };
    let options = args
        .common
        .diffusion
        .apply(EngineOptions { no_shadow: args.no_shadow, ..Default::default() });
    // Refuse bad parameters before touching the input or the output directory.
    spec.validate().map_err(JobError::from)?;
    options.validate().map_err(JobError::from)?;
    spec.framing.check_format(args.common.format).map_err(JobError::from)?;
    let decoded = read_image(&args.input)?;
    // Pixel padding on the input's own size can only be checked now it is known.
    let (width, height) = spec.size.map_or(decoded.image.dimensions(), |s| (s.width, s.height));
    spec.framing.check_canvas(width, height).map_err(JobError::from)?;
    let mut out = stage(&args.common.out)?;
    let decode_ms = ms(started);
    let job = BackgroundJob {
        cutout: &decoded,
        spec: &spec,
        reference: None,
        mask_grow: args.mask_grow,
        engine: args.common.engine,
        options,
    };
    let bar = progress_bar(args.common.json);
    let output =
        run_background(engines, &job, &|p: StepProgress| report(&bar, p), &CancelToken::new())?;
    bar.finish_and_clear();
    let summary = finish("background", &args.common, &mut out, output, decode_ms, started)?;
    publish(out, &args.common, &summary)
}

fn expand(args: ExpandArgs, engines: &Engines) -> Result<(), Failure> {
    let started = Instant::now();
    let spec = ExpansionSpec {
        ratios: ExpansionRatios {
            up: args.up,
            down: args.down,
            left: args.left,
            right: args.right,
        },
        prompt: args.prompt,
        n: args.common.n,
        seed: args.common.seed,
        watermark: args.common.watermark,
    };
    let options = args.common.diffusion.apply(EngineOptions::default());
    spec.validate().map_err(JobError::from)?;
    options.validate().map_err(JobError::from)?;
    let decoded = read_image(&args.input)?;
    let mut out = stage(&args.common.out)?;
    let decode_ms = ms(started);
    let job = ExpansionJob {
        photo: &decoded,
        spec: &spec,
        mask_grow: args.mask_grow,
        engine: args.common.engine,
        options,
    };
    let bar = progress_bar(args.common.json);
    let output =
        run_expansion(engines, &job, &|p: StepProgress| report(&bar, p), &CancelToken::new())?;
    bar.finish_and_clear();
    let summary = finish("expansion", &args.common, &mut out, output, decode_ms, started)?;
    publish(out, &args.common, &summary)
}

/// `backdrop cutout`: the photo with the product's alpha matte, as `cutout-1.png`.
fn cutout(args: CutoutArgs, engines: &Engines) -> Result<(), Failure> {
    let started = Instant::now();
    CutoutSpec { model: args.model.clone() }.validate().map_err(JobError::from)?;
    let decoded = read_image(&args.input)?;
    let mut out = stage(&args.out)?;
    let decode_ms = ms(started);
    let cut = cut_out(engines, &decoded, args.model.as_deref(), &CancelToken::new())?;
    let encode_started = Instant::now();
    let bytes = encode_cutout(&cut.image.image)?;
    let encode_ms = ms(encode_started);
    let write_started = Instant::now();
    let name = "cutout-1.png";
    let path = out.add(name, &bytes).map_err(|e| {
        Failure::output(format!("cannot write {name} to {}: {e}", args.out.display()))
    })?;
    out.commit()
        .map_err(|e| Failure::output(format!("cannot write to {}: {e}", args.out.display())))?;
    let (width, height) = cut.image.image.dimensions();
    if args.json {
        let summary = json!({
            "job": "cutout",
            "model": cut.model,
            "width": width,
            "height": height,
            "images": [{"index": 1, "path": path.display().to_string()}],
            "timings_ms": {
                "decode": round(decode_ms),
                "segment": round(cut.segment_ms),
                "encode": round(encode_ms),
                "write": round(ms(write_started)),
                "total": round(ms(started)),
            },
        });
        println!("{summary}");
    } else {
        println!("model: {}  size: {width}x{height}  time: {} ms", cut.model, round(ms(started)));
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Reads and decodes an input file, refusing an oversize file without reading it whole.
fn read_image(path: &Path) -> Result<DecodedImage, Failure> {
    let limits = DecodeLimits::default();
    let file = std::fs::File::open(path).map_err(|e| {
        Failure::input(format!("cannot read {}: {e}", path.display()), ErrorCode::InputUnreadable)
    })?;
    let mut bytes = Vec::new();
    file.take(limits.max_file_bytes + 1).read_to_end(&mut bytes).map_err(|e| {
        Failure::input(format!("cannot read {}: {e}", path.display()), ErrorCode::InputUnreadable)
    })?;
    if bytes.len() as u64 > limits.max_file_bytes {
        let size = std::fs::metadata(path).map_or(bytes.len() as u64, |m| m.len());
        return Err(
            JobError::from(InputError::FileTooLarge { size, max: limits.max_file_bytes }).into()
        );
    }
    decode(&bytes, &limits).map_err(|e| {
        let e = JobError::from(e);
        Failure { message: format!("{}: {e}", path.display()), code: e.code(), status: 2 }
    })
}

fn stage(dir: &Path) -> Result<StagedOutput, Failure> {
    StagedOutput::new(dir).map_err(|e| {
        Failure::output(format!("cannot write to output directory {}: {e}", dir.display()))
    })
}

fn progress_bar(json: bool) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(1000), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} [{bar:40}] {percent:>3}% {msg} ({elapsed})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

fn report(bar: &ProgressBar, p: StepProgress) {
    bar.set_position((p.fraction() * 1000.0).round() as u64);
    bar.set_message(format!("image {}/{} step {}/{}", p.image + 1, p.images, p.step, p.steps));
}

/// Moves the staged files into place, then prints the summary.
fn publish(out: StagedOutput, common: &CommonArgs, summary: &Value) -> Result<(), Failure> {
    out.commit()
        .map_err(|e| Failure::output(format!("cannot write to {}: {e}", common.out.display())))?;
    if common.json {
        println!("{summary}");
        return Ok(());
    }
    let mut line = format!("engine: {}", summary["engine"].as_str().unwrap_or_default());
    if summary["engine"] != summary["engine_requested"] {
        line.push_str(&format!(
            " (from {})",
            summary["engine_requested"].as_str().unwrap_or_default()
        ));
    }
    if let Some(notes) = summary["notes"].as_object() {
        for (k, v) in notes {
            line.push_str(&format!(", {k}: {}", v.as_str().unwrap_or_default()));
        }
    }
    println!("{line}");
    println!(
        "seed: {}  size: {}x{}  time: {} ms",
        summary["seed"], summary["width"], summary["height"], summary["timings_ms"]["total"]
    );
    for file in summary["images"].as_array().into_iter().flatten() {
        for key in ["path", "preview", "watermarked"] {
            if let Some(p) = file[key].as_str() {
                println!("wrote {p}");
            }
        }
    }
    Ok(())
}

/// Encodes and stages every file; returns the summary.
fn finish(
    job: &str,
    common: &CommonArgs,
    out: &mut StagedOutput,
    output: JobOutput,
    decode_ms: f64,
    started: Instant,
) -> Result<Value, Failure> {
    let encode_started = Instant::now();
    let preview_side = common.preview.then_some(DEFAULT_PREVIEW_SIDE);
    let rendered = render(
        &output.images,
        RenderOptions { format: common.format, preview_side, watermark: common.watermark },
    )?;
    let encode_ms = ms(encode_started);
    let ext = common.format.extension();
    let write_started = Instant::now();
    let mut files = Vec::new();
    for (i, r) in rendered.into_iter().enumerate() {
        let index = i + 1;
        let seed = output.seed.wrapping_add(i as u64);
        let mut entry = json!({"index": index, "seed": seed, "preview": null, "watermarked": null});
        for (file, name, bytes) in r.into_files(&format!("{job}-{index}"), common.format) {
            let path = out.add(&name, &bytes).map_err(|e| {
                Failure::output(format!("cannot write {name} to {}: {e}", common.out.display()))
            })?;
            let field = match file {
                ResultFile::Main => "path",
                ResultFile::Preview => "preview",
                ResultFile::Watermarked => "watermarked",
            };
            entry[field] = json!(path.display().to_string());
        }
        files.push(entry);
    }
    let (width, height) = output.images.first().map_or((0, 0), |img| (img.width(), img.height()));
    let notes: serde_json::Map<String, Value> =
        output.notes.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
    let t = output.timings;
    let summary = json!({
        "job": job,
        "engine": output.engine.as_str(),
        "engine_requested": common.engine.as_str(),
        "seed": output.seed,
        "n": output.images.len(),
        "width": width,
        "height": height,
        "format": ext,
        "images": files,
        "notes": notes,
        "timings_ms": {
            "decode": round(decode_ms),
            "prepare": round(t.prepare_ms),
            "engine": round(t.engine_ms),
            "composite": round(t.composite_ms),
            "segment": round(t.segment_ms),
            "encode": round(encode_ms),
            "write": round(ms(write_started)),
            "total": round(ms(started)),
        },
    });
    Ok(summary)
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

fn round(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}
