//! The two calls into C that no safe crate wraps, and the only unsafe code in the project:
//! registering one CPU arena for every ONNX Runtime session of the process, and handing
//! the C heap's free pages back to the system.
//!
//! Why they matter, measured on the full-size SD-1.5 inpainting export (float32, 512x512,
//! 2-step inpaint, 2 cores; the weights are 4067 MiB):
//! - with an arena per session, each kept what its last run grew it by (ONNX Runtime's
//!   arena shrinkage frees only regions with nothing left in use, and its power-of-two
//!   regions always had something), so the VAE decoder's 840 MiB of activations came on
//!   top of what the encoder and the UNet kept;
//! - glibc kept the pages that loading freed (each network's parsed file and its graph
//!   before optimization), about 250 MiB, because `free` returns only the top of the heap.
//!
//! Peak: 5730 MiB with neither, 5480 MiB trimming alone, 5521 MiB sharing alone, 5151 MiB
//! with both.

#![allow(unsafe_code)]

use ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
use ort::AsPointer;
use std::ffi::CStr;
use std::sync::OnceLock;

/// Registers, once per process, an arena for CPU memory in ONNX Runtime's environment;
/// sessions built with `session.use_env_allocators` then all take their CPU memory from
/// it, so memory one network's run left in the arena serves the next network's run. The
/// arena grows as ONNX Runtime's default CPU arena does (power-of-two regions). The
/// environment must exist (after `runtime::init`).
pub(crate) fn register_shared_cpu_arena() -> Result<(), String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let fail = |e: ort::Error| format!("cannot register the shared CPU arena: {e}");
            let environment = ort::environment::get_environment().map_err(fail)?;
            // The memory info a CPU execution provider looks its allocator up by.
            let info = MemoryInfo::new(
                AllocationDevice::CPU,
                0,
                AllocatorType::Arena,
                MemoryType::Default,
            )
            .map_err(fail)?;
            let api = ort::api();
            // kNextPowerOfTwo, ONNX Runtime's default, named: kSameAsRequested let the
            // arena give back more after each phase but fragmented it (a 2-step inpaint
            // peaked at 5572 MiB against 5151 MiB).
            let keys = [c"arena_extend_strategy".as_ptr()];
            let values = [0usize];
            let mut config: *mut ort::sys::OrtArenaCfg = std::ptr::null_mut();
            // SAFETY: one key and one value, both arrays live across the call, and a valid
            // out pointer; on success `config` is a new object, released below.
            let created = unsafe {
                (api.CreateArenaCfgV2)(keys.as_ptr(), values.as_ptr(), keys.len(), &mut config)
            };
            status("creating the arena configuration", created)?;
            // SAFETY: the environment lives for the rest of the process (ort keeps it in
            // a static), `info` and `config` are live objects; ONNX Runtime copies what
            // it needs from both before returning.
            let registered = unsafe {
                (api.CreateAndRegisterAllocator)(environment.ptr().cast_mut(), info.ptr(), config)
            };
            // SAFETY: `config` came from CreateArenaCfgV2 and is not used again.
            unsafe { (api.ReleaseArenaCfg)(config) };
            status("registering the shared CPU arena", registered)
        })
        .clone()
}

/// Turns an ONNX Runtime status into a result, releasing it.
fn status(what: &str, status: ort::sys::OrtStatusPtr) -> Result<(), String> {
    if status.0.is_null() {
        return Ok(());
    }
    let api = ort::api();
    // SAFETY: a non-null status is a live OrtStatus until released; its message is a
    // NUL-terminated string owned by it, copied before the release.
    let message =
        unsafe { CStr::from_ptr((api.GetErrorMessage)(status.0)) }.to_string_lossy().into_owned();
    // SAFETY: released once, not used after.
    unsafe { (api.ReleaseStatus)(status.0) };
    Err(format!("{what}: {message}"))
}

/// Hands the C heap's free pages back to the system (glibc's `malloc_trim`); elsewhere
/// nothing (musl and other systems' allocators return memory themselves or have no such
/// call). It walks the heap, so it is called at quiet points: after a network is loaded,
/// and after a run that ends a phase of a job; with the CPU provider only (see
/// `runtime::trim_heap`).
pub(crate) fn return_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: takes no pointers and has no preconditions; glibc serializes it with every
    // other allocator call.
    unsafe {
        libc::malloc_trim(0);
    }
}
