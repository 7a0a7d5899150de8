//! ONNX Runtime: finding the shared library, checking its version, and building sessions
//! with the configured execution provider, threads, optimization level and arena.
//!
//! The `ort` crate is built with dynamic loading, so nothing is downloaded or linked at
//! build time. The library is looked for in this order, and the first hit wins:
//! 1. `[diffusion.runtime] library` in the configuration, then `ORT_DYLIB_PATH`;
//! 2. the `onnxruntime` (or `onnxruntime-gpu`) wheel in a project-local venv (`.venv-ort`,
//!    `.venv`, `venv` in the working directory or a parent, or `$VIRTUAL_ENV`), then in
//!    the system Python's site-packages;
//! 3. the system library paths (`LD_LIBRARY_PATH`, `/usr/local/lib`, `/usr/lib`, ...).
//!
//! The library must be ONNX Runtime 1.[`ORT_API_MINOR`] or newer: the version is read from
//! the file name or the wheel's metadata before loading, so a wrong runtime is one clear
//! error instead of a crash.

use crate::DiffusionError;
use ort::execution_providers::{
    CPUExecutionProvider, CUDAExecutionProvider, ExecutionProviderDispatch,
    OpenVINOExecutionProvider, TensorRTExecutionProvider,
};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{NoSelectedOutputs, RunOptions, Session};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The ONNX Runtime minor version the `ort` crate's API level matches (1.22).
pub const ORT_API_MINOR: u32 = 22;
/// The `onnxruntime` wheel version `tools/test` installs.
pub const ORT_WHEEL_VERSION: &str = "1.22.1";

/// Where the networks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// The CPU (default; the `onnxruntime` wheel).
    #[default]
    Cpu,
    /// NVIDIA CUDA (the `onnxruntime-gpu` wheel, CUDA 12 and cuDNN 9 installed).
    Cuda,
    /// NVIDIA TensorRT, falling back to CUDA then CPU for unsupported nodes.
    Tensorrt,
    /// Intel OpenVINO (the `onnxruntime-openvino` wheel, 1.23 or newer) on
    /// `openvino_device`, falling back to the CPU provider for unsupported nodes. OpenVINO
    /// compiles a network for one shape, so the UNet and VAE always get fixed-shape
    /// sessions with it.
    Openvino,
}

/// ONNX Runtime graph optimizations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Optimization {
    /// None.
    Disable,
    /// Constant folding, redundant node removal.
    Basic,
    /// Plus node fusions (attention, GELU, layer norm).
    Extended,
    /// Plus layout optimizations (default).
    #[default]
    All,
}

/// `[diffusion.runtime]`: how ONNX Runtime runs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Path of `libonnxruntime.so` (overrides discovery).
    #[serde(default)]
    pub library: Option<PathBuf>,
    /// `cpu` (default), `cuda`, `tensorrt` or `openvino`.
    #[serde(default)]
    pub provider: Provider,
    /// GPU index for `cuda` / `tensorrt`.
    #[serde(default)]
    pub device_id: i32,
    /// OpenVINO's device for `openvino`: `CPU` (default), `GPU`, `GPU.1`, `NPU`, ...
    #[serde(default)]
    pub openvino_device: Option<String>,
    /// Threads inside one operator; default: all cores.
    #[serde(default)]
    pub threads: Option<usize>,
    /// `disable`, `basic`, `extended` or `all` (default).
    #[serde(default)]
    pub optimization: Optimization,
    /// Keep ONNX Runtime's memory arena (faster repeated runs, higher peak; default on).
    #[serde(default = "default_true")]
    pub memory_arena: bool,
    /// With the CPU provider and the arena: one arena for every network of the process
    /// instead of one each, so the memory the VAE encoder and the UNet leave in it serves
    /// the decoder (default on). Measured on SD 1.5 at 512x512, float32, with the heap
    /// trimming the CPU provider always gets (see `native.rs`): a 2-step inpaint peaked at 5151 MiB
    /// against 5467 MiB with an arena per network, a 20-step one at 5284 against 5474.
    #[serde(default = "default_true")]
    pub shared_arena: bool,
    /// ONNX Runtime's memory pattern planning (reuses one allocation plan between runs of
    /// the same shapes); default off. Measured on the full-size SD-1.5 UNet (20-step
    /// 512x512 inpaint, int8 export): off peaked at 5201 MiB in 171 s, on at 5337 to 5619
    /// MiB in 175 to 178 s; a 2-step run of the float32 export gave 7468 MiB in 40.8 s off
    /// against 7544 MiB in 43.0 s on. The plan buys nothing here and holds memory.
    #[serde(default)]
    pub memory_pattern: Option<bool>,
    /// Whether idle intra-op threads spin waiting for work (lower latency between
    /// operators, busy cores between runs); default: ONNX Runtime's (on).
    #[serde(default)]
    pub spinning: Option<bool>,
    /// Return the CPU arena's activation memory to the system after each run of the text
    /// encoder and the VAE and after a denoising loop's last UNet step (ONNX Runtime's
    /// arena shrinkage), so the phases of a job do not hold each other's memory; the
    /// UNet keeps its arena between steps. Default on (measured on SD 1.5 at 512x512: 1.2
    /// GB less at the peak of a 20-step inpaint; each decode takes about 3% longer, as it
    /// maps its memory again); only with the CPU provider and the arena.
    #[serde(default = "default_true")]
    pub release_memory: bool,
    /// Flush denormal floats to zero (avoids slow paths on some CPUs; default off).
    #[serde(default)]
    pub denormal_as_zero: bool,
    /// Whether ONNX Runtime pre-packs weights for its kernels (on by default). Not part of
    /// the configuration: a model turns it off for its text encoder, where the packed copy
    /// costs memory and saves no time (see `Model::open_with`).
    #[serde(skip, default = "default_true")]
    pub prepacking: bool,
    /// Build the UNet and VAE sessions for the concrete batch and image sizes of a run
    /// (ONNX Runtime free-dimension overrides), so the graph is planned and fused for one
    /// shape; sessions are cached per shape, at most `fixed_shape_cache` per network
    /// (each holds its own copy of the weights). Default off.
    #[serde(default)]
    pub fixed_shapes: bool,
    /// Fixed-shape sessions kept per network (default 1: a new size replaces the old).
    #[serde(default = "default_fixed_shape_cache")]
    pub fixed_shape_cache: usize,
}

fn default_fixed_shape_cache() -> usize {
    1
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            library: None,
            provider: Provider::default(),
            device_id: 0,
            openvino_device: None,
            threads: None,
            optimization: Optimization::default(),
            memory_arena: true,
            shared_arena: true,
            memory_pattern: None,
            spinning: None,
            release_memory: true,
            denormal_as_zero: false,
            prepacking: true,
            fixed_shapes: false,
            fixed_shape_cache: default_fixed_shape_cache(),
        }
    }
}

fn default_true() -> bool {
    true
}

impl RuntimeConfig {
    /// Whether the UNet and VAE get sessions built per shape: as configured, and always
    /// with OpenVINO, which compiles a network for one shape (measured: its CPU plugin
    /// fails on the dynamic-shape SD UNet's GELU, in a fusion pass).
    pub fn shapes_fixed(&self) -> bool {
        self.fixed_shapes || self.provider == Provider::Openvino
    }
}

/// The loaded runtime.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeInfo {
    /// The library file.
    pub library: PathBuf,
    /// Its version, when known.
    pub version: Option<String>,
}

static RUNTIME: OnceLock<Result<RuntimeInfo, String>> = OnceLock::new();

/// How to install the runtime, for error messages.
pub fn install_hint() -> String {
    format!(
        "install it with `python3 -m venv .venv-ort && .venv-ort/bin/pip install \
         onnxruntime=={ORT_WHEEL_VERSION}` (onnxruntime-gpu for CUDA) in the working \
         directory, or point [diffusion.runtime] library / ORT_DYLIB_PATH at \
         libonnxruntime.so 1.{ORT_API_MINOR}"
    )
}

/// Finds the library without loading it.
pub fn find_library(config: &RuntimeConfig) -> Result<PathBuf, DiffusionError> {
    if let Some(path) = &config.library {
        return existing(path, "[diffusion.runtime] library");
    }
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return existing(Path::new(&path), "ORT_DYLIB_PATH");
    }
    for site in site_packages_dirs() {
        for package in ["onnxruntime/capi"] {
            if let Some(lib) = library_in(&site.join(package)) {
                return Ok(lib);
            }
        }
    }
    let mut system: Vec<PathBuf> = std::env::var_os("LD_LIBRARY_PATH")
        .map(|v| std::env::split_paths(&v).collect())
        .unwrap_or_default();
    system.extend(
        ["/usr/local/lib", "/usr/lib", "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu"]
            .map(PathBuf::from),
    );
    for dir in system {
        if let Some(lib) = library_in(&dir) {
            return Ok(lib);
        }
    }
    Err(DiffusionError::Runtime(format!("ONNX Runtime was not found; {}", install_hint())))
}

fn existing(path: &Path, source: &str) -> Result<PathBuf, DiffusionError> {
    if path.is_file() {
        Ok(path.to_path_buf())
    } else {
        Err(DiffusionError::Runtime(format!(
            "{source} names {}, which does not exist; {}",
            path.display(),
            install_hint()
        )))
    }
}

/// `libonnxruntime.so*` in a folder, preferring the versioned file.
fn library_in(dir: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libonnxruntime.so") || n == "libonnxruntime.dylib")
        })
        .collect();
    found.sort();
    found.pop()
}

/// Python site-packages folders, project-local venvs first: those of the working
/// directory and its parents, then those of the checkout the running binary sits in
/// (`target/debug/backdrop` finds the venv `tools/test` made beside `target/`).
pub(crate) fn site_packages_dirs() -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = Vec::new();
    let cwd = std::env::current_dir().ok();
    let exe = std::env::current_exe().ok().and_then(|p| p.parent().map(PathBuf::from));
    for start in [cwd, exe].into_iter().flatten() {
        for dir in start.ancestors() {
            for name in [".venv-ort", ".venv", "venv"] {
                let root = dir.join(name);
                if !roots.contains(&root) {
                    roots.push(root);
                }
            }
        }
    }
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        roots.push(PathBuf::from(venv));
    }
    let mut sites = Vec::new();
    for root in roots {
        sites.extend(python_sites(&root.join("lib"), "site-packages"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        sites.extend(python_sites(&Path::new(&home).join(".local/lib"), "site-packages"));
    }
    for base in ["/usr/local/lib", "/usr/lib"] {
        sites.extend(python_sites(Path::new(base), "site-packages"));
        sites.extend(python_sites(Path::new(base), "dist-packages"));
    }
    sites
}

/// `<lib>/python3.*/<leaf>` folders.
fn python_sites(lib: &Path, leaf: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(lib) else { return Vec::new() };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("python3"))
        })
        .map(|p| p.join(leaf))
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    out
}

/// The version of a library from its file name (`libonnxruntime.so.1.22.1`) or, for a
/// wheel, from its `onnxruntime*-X.Y.Z.dist-info` folder.
pub fn library_version(library: &Path) -> Option<String> {
    let name = library.file_name()?.to_str()?;
    if let Some(version) = name.strip_prefix("libonnxruntime.so.") {
        if version.split('.').count() >= 2 {
            return Some(version.to_owned());
        }
    }
    let site = library.parent()?.parent()?.parent()?;
    let entries = std::fs::read_dir(site).ok()?;
    entries.filter_map(|e| e.ok()).find_map(|e| {
        let name = e.file_name().into_string().ok()?;
        let rest = name.strip_prefix("onnxruntime")?.strip_suffix(".dist-info")?;
        let version = rest.rsplit('-').next()?;
        Some(version.to_owned())
    })
}

/// Checks a version string against the API level.
pub fn check_version(version: &str) -> Result<(), String> {
    let mut parts = version.split('.');
    let major = parts.next().and_then(|p| p.parse::<u32>().ok());
    let minor = parts.next().and_then(|p| p.parse::<u32>().ok());
    match (major, minor) {
        (Some(1), Some(minor)) if minor >= ORT_API_MINOR => Ok(()),
        _ => Err(format!(
            "ONNX Runtime {version} is too old or not recognised: Backdrop needs 1.{ORT_API_MINOR} or newer"
        )),
    }
}

/// Loads the runtime once per process; later calls return the first outcome.
pub fn init(config: &RuntimeConfig) -> Result<RuntimeInfo, DiffusionError> {
    RUNTIME
        .get_or_init(|| {
            let library = find_library(config).map_err(|e| e.to_string())?;
            let version = library_version(&library);
            if let Some(v) = &version {
                check_version(v).map_err(|e| {
                    format!("{e} (found at {}); {}", library.display(), install_hint())
                })?;
            }
            let path = library.to_string_lossy().into_owned();
            // `ort` panics when the file is not a loadable ONNX Runtime; turn that into an
            // error for the user.
            let committed =
                std::panic::catch_unwind(|| ort::init_from(path).with_name("backdrop").commit());
            match committed {
                Ok(Ok(_)) => Ok(RuntimeInfo { library, version }),
                Ok(Err(e)) => Err(format!("ONNX Runtime at {}: {e}", library.display())),
                Err(_) => Err(format!(
                    "{} could not be loaded as ONNX Runtime 1.{ORT_API_MINOR}; {}",
                    library.display(),
                    install_hint()
                )),
            }
        })
        .clone()
        .map_err(DiffusionError::Runtime)
}

/// Options for one run: with `release` (a run after which the network is not run again
/// soon) and [`RuntimeConfig::release_memory`], the CPU arena gives back what the run
/// grew it by when the run ends.
pub fn run_options(
    config: &RuntimeConfig,
    release: bool,
) -> Result<RunOptions<NoSelectedOutputs>, DiffusionError> {
    let fail = |e: ort::Error| DiffusionError::Failed(format!("run options: {e}"));
    let mut options = RunOptions::new().map_err(fail)?;
    if release && config.release_memory && config.memory_arena && config.provider == Provider::Cpu {
        options.add_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0").map_err(fail)?;
    }
    Ok(options)
}

/// After a run made with [`run_options`]`(config, release)`: with `release` and
/// [`RuntimeConfig::release_memory`], the C heap's free pages go back to the system too.
pub fn after_run(config: &RuntimeConfig, release: bool) {
    if release && config.release_memory {
        trim_heap(config);
    }
}

/// Hands the C heap's free pages back (see `native.rs`), with the CPU provider only,
/// where it was measured.
fn trim_heap(config: &RuntimeConfig) {
    if config.provider == Provider::Cpu {
        crate::native::return_free_heap();
    }
}

/// Opens one network with the configured provider and options.
pub fn session(config: &RuntimeConfig, model: &Path) -> Result<Session, DiffusionError> {
    session_with(config, model, &[])
}

/// Opens one network with its symbolic input dimensions fixed to the given sizes
/// (`(symbol, size)` pairs, ONNX Runtime free-dimension overrides), so that shape
/// inference, fusions and the memory plan see one concrete shape.
pub fn session_with(
    config: &RuntimeConfig,
    model: &Path,
    dimensions: &[(String, i64)],
) -> Result<Session, DiffusionError> {
    init(config)?;
    let fail =
        |e: ort::Error| DiffusionError::Model(format!("cannot load {}: {e}", model.display()));
    let level = match config.optimization {
        Optimization::Disable => GraphOptimizationLevel::Disable,
        Optimization::Basic => GraphOptimizationLevel::Level1,
        Optimization::Extended => GraphOptimizationLevel::Level2,
        Optimization::All => GraphOptimizationLevel::Level3,
    };
    let threads = config
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let cpu = CPUExecutionProvider::default().with_arena_allocator(config.memory_arena).build();
    let providers: Vec<ExecutionProviderDispatch> = match config.provider {
        Provider::Cpu => vec![cpu],
        Provider::Cuda => vec![
            CUDAExecutionProvider::default()
                .with_device_id(config.device_id)
                .build()
                .error_on_failure(),
            cpu,
        ],
        Provider::Tensorrt => vec![
            TensorRTExecutionProvider::default()
                .with_device_id(config.device_id)
                .build()
                .error_on_failure(),
            CUDAExecutionProvider::default().with_device_id(config.device_id).build(),
            cpu,
        ],
        Provider::Openvino => vec![
            OpenVINOExecutionProvider::default()
                .with_device_type(config.openvino_device.as_deref().unwrap_or("CPU"))
                .with_num_threads(threads)
                .build()
                .error_on_failure(),
            cpu,
        ],
    };
    let mut builder = Session::builder()
        .and_then(|b| b.with_optimization_level(level))
        .and_then(|b| b.with_intra_threads(threads))
        .and_then(|b| b.with_memory_pattern(config.memory_pattern.unwrap_or(false)))
        .map_err(fail)?;
    if let Some(spinning) = config.spinning {
        builder = builder.with_intra_op_spinning(spinning).map_err(fail)?;
    }
    if config.denormal_as_zero {
        builder = builder.with_denormal_as_zero().map_err(fail)?;
    }
    if !config.prepacking {
        builder = builder.with_prepacking(false).map_err(fail)?;
    }
    if config.shared_arena && config.memory_arena && config.provider == Provider::Cpu {
        crate::native::register_shared_cpu_arena().map_err(DiffusionError::Runtime)?;
        builder = builder.with_env_allocators().map_err(fail)?;
    }
    for (symbol, size) in dimensions {
        builder = builder.with_dimension_override(symbol, *size).map_err(fail)?;
    }
    // OpenVINO's model compilation is not safe to run twice at once: two sessions
    // compiled in parallel corrupted the heap inside its transformation passes
    // ("malloc(): unaligned tcache chunk" in SharedOpOptimization) in about one parity
    // run in five. Sessions with it are therefore built one at a time.
    static OPENVINO_COMPILE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = (config.provider == Provider::Openvino)
        .then(|| OPENVINO_COMPILE.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    let session = builder
        .with_execution_providers(providers)
        .and_then(|b| b.commit_from_file(model))
        .map_err(fail)?;
    // Loading parsed the whole file and built the graph before optimizing it, then freed
    // most of that: about twice a VAE's size stayed resident until trimmed.
    trim_heap(config);
    Ok(session)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_and_checked() {
        assert_eq!(
            library_version(Path::new("/x/libonnxruntime.so.1.22.1")).as_deref(),
            Some("1.22.1")
        );
        assert!(check_version("1.22.1").is_ok());
        assert!(check_version("1.23.0").is_ok());
        assert!(check_version("1.20.1").expect_err("must fail").contains("1.22"));
        assert!(check_version("garbage").is_err());
    }

    #[test]
    fn a_named_library_that_is_missing_is_one_clear_error() {
        let config = RuntimeConfig {
            library: Some(PathBuf::from("/nonexistent/libonnxruntime.so")),
            ..Default::default()
        };
        let err = find_library(&config).expect_err("must fail").to_string();
        assert!(err.contains("/nonexistent/libonnxruntime.so"), "{err}");
        assert!(err.contains("pip install onnxruntime=="), "{err}");
    }
}
