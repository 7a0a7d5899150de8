#!/usr/bin/env python3
"""Benchmark of the diffusion engine against diffusers/PyTorch on this machine.

Builds the full-size SD-1.5 inpainting architecture (9-channel UNet 320/640/1280/1280,
VAE 128/256/512/512, CLIP ViT-L/14 text encoder) with random weights, and a full-size
random TAESD (diffusers' AutoencoderTiny, default widths), exports them with
export_onnx.py (once, into --work), then measures, each runner in its own process:
  - one UNet step (batch 2 = guidance, 64x64 latents), and batch 1 (guidance <= 1, LCM),
  - VAE encode and decode at 512x512, and the tiny (TAESD) encoder's and decoder's,
  - a full --steps 512x512 inpaint end to end (one run), a 4-step LCM inpaint (guidance
    1), and the same with TAESD encoding the masked image and decoding the result
    (lcm_tiny_s),
for Backdrop (the `bench` example of backdrop-diffusion, ONNX Runtime) and for diffusers
on PyTorch f32 and bf16, with peak RSS. Every per-call figure is the median of --runs
(default 3) timed runs after one warm-up run, and so is each 4-step inpaint; the full
inpaint is one run.

--quick times the UNet step and the decode only, for backdrop and pytorch-f32 (bf16 is
the slower peer in this build and alone would take longer than the whole quick run; ask
for it with --runners); it takes a few minutes once the model is exported (the first
run builds and exports it, which takes longer).

Ratios are printed against the best peer (the fastest PyTorch runner) for every figure.
Not part of CI (it takes a long while and ~10 GB of disk). Usage:
  .venv-diffusion/bin/python tools/diffusion/bench.py [--work DIR] [--steps 20] [--quick]
      [--runs 3] [--runners backdrop,pytorch-f32,pytorch-bf16] [--fixed-shapes]
      [--before OLD_BENCH --runners backdrop-before,backdrop,pytorch-f32]
      [--runners backdrop,backdrop-ort-cpu,backdrop-int8,pytorch-f32]
The runner backdrop-ort-cpu is the same engine on a copy of the export whose UNet went
through ONNX Runtime's Stable Diffusion optimizer for the CPU (export_onnx.py
--ort-optimize cpu; made once, in DIR/onnx-ort-cpu); backdrop-int8 on a copy whose
optimized UNet was then quantized (--quantize int8, DIR/onnx-int8; the step's relative
error against float32 is printed when it is made and kept in its export.json);
backdrop-openvino on the plain export with the OpenVINO provider (the onnxruntime-openvino
wheel in .venv-openvino, which tools/test installs; fixed-shape sessions, as OpenVINO
needs). Outside --quick, every Backdrop
runner also runs one inpaint alone in a process of its own: inpaint_peak_rss_mb is what
serving one job needs, while peak_rss_mb holds everything the bench ran (two models, the
batch-1 plan, the plain call's buffers).
Figures are printed as a table and written to DIR/bench.json (one object per runner);
DIR/bench-run.json records the settings, the load average and the time taken.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))


def build_checkpoint(folder: Path):
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from make_fixtures import SD1_SCHEDULER, learn_vocab
    from transformers import CLIPTextConfig, CLIPTextModel

    if (folder / "model_index.json").exists():
        return
    torch.manual_seed(0)
    learn_vocab(folder / "tokenizer")
    text = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072,
                                        num_hidden_layers=12, num_attention_heads=12,
                                        max_position_embeddings=77, hidden_act="quick_gelu"))
    unet = UNet2DConditionModel(sample_size=64, in_channels=9, out_channels=4,
                                block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
                                cross_attention_dim=768, attention_head_dim=8)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
                        block_out_channels=(128, 256, 512, 512), sample_size=512,
                        down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4)
    text.save_pretrained(folder / "text_encoder")
    unet.save_pretrained(folder / "unet")
    vae.save_pretrained(folder / "vae")
    build_tiny_vae(folder)
    (folder / "scheduler").mkdir(parents=True, exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(SD1_SCHEDULER))
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionInpaintPipeline"}))


def build_tiny_vae(folder: Path):
    """A random AutoencoderTiny of TAESD's full size, beside the checkpoint."""
    import torch
    from diffusers import AutoencoderTiny

    if (folder / "taesd" / "config.json").exists():
        return
    torch.manual_seed(1)
    AutoencoderTiny().save_pretrained(folder / "taesd")


def timed_calls(runs, f):
    """The median of `runs` timed calls after one warm-up call, and every timed call."""
    f()
    times = []
    for _ in range(max(runs, 1)):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2], times


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def torch_run(checkpoint: Path, dtype_name: str, steps: int, runs: int, quick: bool):
    """diffusers' inpainting pipeline on PyTorch; prints one JSON line."""
    import numpy as np
    import torch
    from diffusers import (AutoencoderKL, AutoencoderTiny, DPMSolverMultistepScheduler, LCMScheduler,
                           StableDiffusionInpaintPipeline, UNet2DConditionModel)
    from PIL import Image
    from transformers import CLIPTextModel, CLIPTokenizer

    torch.set_num_threads(os.cpu_count())
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    # On a GPU run (tools/gpu-check) the peers run on the GPU too.
    gpu = os.environ.get("BACKDROP_BENCH_PROVIDER") in ("cuda", "tensorrt") and torch.cuda.is_available()
    device = "cuda" if gpu else "cpu"
    scheduler_config = json.loads((checkpoint / "scheduler" / "scheduler_config.json").read_text())
    pipe = StableDiffusionInpaintPipeline(
        vae=AutoencoderKL.from_pretrained(checkpoint / "vae", torch_dtype=dtype),
        text_encoder=CLIPTextModel.from_pretrained(checkpoint / "text_encoder", torch_dtype=dtype),
        tokenizer=CLIPTokenizer.from_pretrained(checkpoint / "tokenizer"),
        unet=UNet2DConditionModel.from_pretrained(checkpoint / "unet", torch_dtype=dtype),
        scheduler=DPMSolverMultistepScheduler.from_config(scheduler_config),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    tiny = AutoencoderTiny.from_pretrained(checkpoint / "taesd", torch_dtype=dtype)
    pipe.to(device)
    tiny.to(device)
    out = {"device": device}

    def record(name, figures):
        out[name], out[f"{name}_runs"] = figures

    def timed(runs, f):
        def synced():
            f()
            if gpu:
                torch.cuda.synchronize()
        return timed_calls(runs, synced)

    with torch.inference_mode():
        sample = torch.randn(2, 9, 64, 64, dtype=dtype, device=device)
        states = torch.randn(2, 77, 768, dtype=dtype, device=device)
        t = torch.tensor([500.0, 500.0], dtype=dtype, device=device)
        record("unet_step_s", timed(runs, lambda: pipe.unet(sample, t, states)))
        if not quick:
            record("unet_step_b1_s", timed(runs, lambda: pipe.unet(sample[:1], t[:1], states[:1])))
            image = torch.randn(1, 3, 512, 512, dtype=dtype, device=device)
            record("vae_encode_s", timed(runs, lambda: pipe.vae.encode(image)))
        latent = torch.randn(1, 4, 64, 64, dtype=dtype, device=device)
        record("vae_decode_s", timed(runs, lambda: pipe.vae.decode(latent)))
        record("vae_decode_tiny_s", timed(runs, lambda: tiny.decode(latent)))
        if not quick:
            record("vae_encode_tiny_s", timed(runs, lambda: tiny.encode(image)))
    if not quick:
        img = Image.fromarray((np.random.default_rng(0).random((512, 512, 3)) * 255).astype("uint8"))
        mask = Image.fromarray(np.where(np.arange(512)[None, :] > 256, 255, 0).repeat(512, 0).astype("uint8"))
        start = time.perf_counter()
        pipe(prompt="a bottle on a table", image=img, mask_image=mask, num_inference_steps=steps,
             guidance_scale=7.5, generator=torch.Generator("cpu").manual_seed(1))
        out["inpaint_s"] = time.perf_counter() - start
        pipe.scheduler = LCMScheduler.from_config(scheduler_config)

        def lcm():
            pipe(prompt="a bottle on a table", image=img, mask_image=mask, num_inference_steps=4,
                 guidance_scale=1.0, generator=torch.Generator("cpu").manual_seed(1))
        # Four steps are short enough to time like the calls (the full inpaint is one run).
        record("lcm_s", timed(runs, lcm))
        # The few-step path with TAESD as the pipeline's VAE: it encodes the masked image
        # and decodes the result, as the engine's tiny_encoder and tiny_decoder do.
        pipe.vae = tiny
        record("lcm_tiny_s", timed(runs, lcm))
    out["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(out))


def child(args, env=None):
    """Runs a measurement in its own process (peak RSS is per process)."""
    result = subprocess.run(args, capture_output=True, text=True, check=True,
                            env=dict(os.environ, **(env or {})))
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    # Each peer's figures as soon as it finishes: a full run takes a long while.
    print(json.dumps({"command": args[0], **figures}), flush=True)
    return figures


KEYS = ["unet_step_s", "unet_step_b1_s", "vae_encode_s", "vae_encode_tiny_s", "vae_decode_s", "vae_decode_tiny_s",
        "inpaint_s",
        "lcm_s", "lcm_tiny_s", "peak_rss_mb", "inpaint_peak_rss_mb"]
RUNNERS = ["backdrop", "pytorch-f32", "pytorch-bf16"]
# Runners that are asked for by name only (not part of the default set or of bench.json's
# fixed three).
EXTRA_RUNNERS = ["backdrop-before", "backdrop-ort-cpu", "backdrop-int8", "backdrop-openvino"]


def openvino_env():
    """backdrop-openvino's environment: the onnxruntime-openvino wheel's runtime (the venv
    tools/test installs, .venv-openvino) and the OpenVINO provider."""
    found = sorted(ROOT.glob(".venv-openvino/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.*"))
    if not found:
        sys.exit("backdrop-openvino needs the onnxruntime-openvino wheel in .venv-openvino (tools/test installs it)")
    return {"ORT_DYLIB_PATH": str(found[0]), "BACKDROP_BENCH_PROVIDER": "openvino"}


def ort_optimized_copy(onnx_dir: Path, out: Path, quantized: bool = False):
    """OUT: the export with its UNet through ONNX Runtime's SD optimizer for the CPU
    (export_onnx.py --ort-optimize cpu) and, with `quantized`, then quantized to int8
    (--quantize int8); the other networks are links to ONNX_DIR's. Made in a process of
    its own: the optimizer and the quantizer's error check leave their process holding
    gigabytes (17 GB was seen), and in the bench's own process that memory stayed taken
    while the runners ran (a 20-step run was killed for want of memory). A copy counts
    as made once its export.json records the steps (each is recorded when it finishes),
    so a copy that was interrupted is made again rather than measured half-done."""
    info = json.loads((out / "export.json").read_text()) if (out / "export.json").exists() else {}
    if info.get("ort_optimize") == "cpu" and (not quantized or info.get("quantize") == "int8"):
        link_parts(onnx_dir, out)  # networks added to the export since the copy was made
        return out
    command = [sys.executable, __file__, "--make-copy", str(onnx_dir), str(out)]
    subprocess.run(command + (["--quantized"] if quantized else []), check=True)
    return out


def link_parts(onnx_dir: Path, out: Path):
    """Links ONNX_DIR's parts other than the UNet into OUT, those not there yet."""
    out.mkdir(parents=True, exist_ok=True)
    for part in onnx_dir.iterdir():
        if part.name not in ("unet", "export.json") and not (out / part.name).exists():
            (out / part.name).symlink_to(part.resolve())


def make_copy(onnx_dir: Path, out: Path, quantized: bool):
    """The body of ort_optimized_copy, run in its child process."""
    import shutil
    from export_onnx import ort_optimize, quantize

    link_parts(onnx_dir, out)
    shutil.copy(onnx_dir / "export.json", out / "export.json")
    shutil.copytree(onnx_dir / "unet", out / "unet", dirs_exist_ok=True)
    ort_optimize(out, "cpu")
    if quantized:
        print(f"int8 UNet: one step's relative error {quantize(out, 'int8'):.2e}", file=sys.stderr)


def table(results):
    """The figures, then each runner's ratio to the best peer (the fastest PyTorch runner
    for that figure; below 1 is faster than it)."""
    keys = [k for k in KEYS if any(isinstance(r.get(k), (int, float)) for r in results.values())]
    lines = [f"{'':14}" + "".join(f"{k:>18}" for k in keys)]
    for name, r in results.items():
        cells = [r.get(k) for k in keys]
        lines.append(f"{name:14}" + "".join(f"{c:>18.2f}" if isinstance(c, (int, float)) else f"{'-':>18}"
                                            for c in cells))
    peers = {n: r for n, r in results.items() if n.startswith("pytorch")}
    best = {}
    for k in keys:
        values = [(r[k], n) for n, r in peers.items() if isinstance(r.get(k), (int, float))]
        if values:
            best[k] = min(values)
    if best:
        lines.append("ratio to the best peer (its name below the figure):")
        for name, r in results.items():
            cells = []
            for k in keys:
                v = r.get(k)
                cells.append(f"{v / best[k][0]:>17.2f}x" if k in best and isinstance(v, (int, float))
                             else f"{'-':>18}")
            lines.append(f"{name:14}" + "".join(cells))
        lines.append(f"{'best peer':14}" + "".join(f"{best[k][1] if k in best else '-':>18}" for k in keys))
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=ROOT / "target" / "bench-sd15")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3, help="timed runs per figure, after one warm-up")
    parser.add_argument("--quick", action="store_true", help="the UNet step and the decode only")
    parser.add_argument("--runners", help="comma-separated: backdrop, pytorch-f32, pytorch-bf16")
    parser.add_argument("--fixed-shapes", action="store_true", help="backdrop with fixed-shape sessions")
    parser.add_argument("--threads", type=int, help="backdrop's intra-op threads")
    parser.add_argument("--torch", choices=["f32", "bf16"], help=argparse.SUPPRESS)
    parser.add_argument("--make-copy", nargs=2, type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--quantized", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--skip-torch", action="store_true")
    parser.add_argument("--no-build", action="store_true", help="use an already built bench example")
    parser.add_argument("--before", type=Path,
                        help="an earlier build's bench example (its `bench MODEL_DIR STEPS` interface, one "
                             "run per figure), timed as the runner `backdrop-before` in the same run")
    parser.add_argument("--target-dir", type=Path, default=Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")))
    args = parser.parse_args()
    checkpoint, onnx_dir = args.work / "checkpoint", args.work / "onnx"
    if args.torch:
        return torch_run(checkpoint, args.torch, args.steps, args.runs, args.quick)
    if args.make_copy:
        return make_copy(*args.make_copy, args.quantized)
    if args.runners:
        runners = [r.strip() for r in args.runners.split(",") if r.strip()]
        unknown = set(runners) - set(RUNNERS) - set(EXTRA_RUNNERS)
        if unknown:
            sys.exit(f"unknown runners: {', '.join(sorted(unknown))}")
    elif args.skip_torch:
        runners = ["backdrop"]
    elif args.quick:
        runners = ["backdrop", "pytorch-f32"]
    else:
        runners = list(RUNNERS)
    started = time.perf_counter()
    build_checkpoint(args.work / "checkpoint")
    build_tiny_vae(checkpoint)
    from export_onnx import export, export_tiny_vae
    if not (onnx_dir / "model_index.json").exists():
        export(checkpoint, onnx_dir)
    if not all((onnx_dir / part / "model.onnx").exists() for part in ("vae_decoder_tiny", "vae_encoder_tiny")):
        from diffusers import AutoencoderTiny
        export_tiny_vae(AutoencoderTiny.from_pretrained(checkpoint / "taesd"), onnx_dir)
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-p", "backdrop-diffusion", "--example", "bench"],
                       cwd=ROOT, check=True, env=dict(os.environ, CARGO_TARGET_DIR=str(args.target_dir)))
    prepared = time.perf_counter()
    results = {}
    for runner in runners:
        env = None
        if runner == "backdrop-before":
            if not args.before:
                sys.exit("the runner backdrop-before needs --before PATH")
            command = [str(args.before), str(onnx_dir), str(args.steps)]
        elif runner.startswith("backdrop"):
            folder = {
                "backdrop": lambda: onnx_dir,
                "backdrop-openvino": lambda: onnx_dir,
                "backdrop-ort-cpu": lambda: ort_optimized_copy(onnx_dir, args.work / "onnx-ort-cpu"),
                "backdrop-int8": lambda: ort_optimized_copy(onnx_dir, args.work / "onnx-int8", quantized=True),
            }[runner]()
            base = [str(args.target_dir / "release" / "examples" / "bench"), str(folder), "--steps", str(args.steps)]
            base += ["--fixed-shapes"] if args.fixed_shapes else []
            base += ["--threads", str(args.threads)] if args.threads else []
            if runner == "backdrop-openvino":
                env = openvino_env()
            if not args.quick:
                # One inpaint alone in its own process: what serving one job needs.
                alone = child(base + ["--inpaint-only"], env)
                results.setdefault(runner, {})["inpaint_peak_rss_mb"] = alone["peak_rss_mb"]
            command = base + ["--runs", str(args.runs), "--tiny-decoder", "vae_decoder_tiny",
                              "--tiny-encoder", "vae_encoder_tiny"]
            command += ["--quick"] if args.quick else []
        else:
            command = [sys.executable, __file__, "--work", str(args.work), "--steps", str(args.steps),
                       "--runs", str(args.runs), "--torch", runner.removeprefix("pytorch-")]
            command += ["--quick"] if args.quick else []
        results[runner] = {**child(command, env), **results.get(runner, {})}
    for runner in RUNNERS:
        # The file keeps one object per runner; one not run says why.
        results.setdefault(runner, {"skipped": "not among --runners (--quick runs backdrop and pytorch-f32)",
                                    **{k: None for k in ["unet_step_s", "vae_encode_s", "vae_decode_s",
                                                         "inpaint_s", "peak_rss_mb"]}})
    for r in results.values():
        for k in ["unet_step_s", "vae_encode_s", "vae_decode_s", "inpaint_s", "peak_rss_mb"]:
            r.setdefault(k, None)
    ran = {n: r for n, r in results.items() if "skipped" not in r}
    meta = {"steps": args.steps, "runs": args.runs, "quick": args.quick, "fixed_shapes": args.fixed_shapes,
            "load_average": os.getloadavg(), "measure_s": time.perf_counter() - prepared,
            "total_s": time.perf_counter() - started}
    (args.work / "bench.json").write_text(json.dumps(results, indent=2))
    # How the figures were taken, beside them (bench.json holds the runners only).
    (args.work / "bench-run.json").write_text(json.dumps(meta, indent=2))
    print(table(ran))
    print(f"measured in {meta['measure_s']:.0f} s (load average {meta['load_average'][0]:.2f} at the end)")
    if "inpaint_s" in best_of(ran):
        value, name = best_of(ran)["inpaint_s"]
        if isinstance(ran.get("backdrop", {}).get("inpaint_s"), (int, float)):
            print(f"end to end vs {name}: {ran['backdrop']['inpaint_s'] / value:.2f}x (target <= 0.9x)")


def best_of(results):
    best = {}
    for n, r in results.items():
        if not n.startswith("pytorch"):
            continue
        for k, v in r.items():
            if isinstance(v, (int, float)) and (k not in best or v < best[k][0]):
                best[k] = (v, n)
    return best


if __name__ == "__main__":
    main()
