#!/usr/bin/env python3
"""Benchmark of the diffusion engine against diffusers/PyTorch on this machine.

Builds the full-size SD-1.5 inpainting architecture (9-channel UNet 320/640/1280/1280,
VAE 128/256/512/512, CLIP ViT-L/14 text encoder) with random weights, exports it with
export_onnx.py, then measures from one run:
  - one UNet step (batch 2 = guidance, 64x64 latents),
  - VAE encode and decode at 512x512,
  - a full 20-step 512x512 inpaint end to end,
for Backdrop (the `bench` example of backdrop-diffusion, ONNX Runtime) and for diffusers
on PyTorch f32 and bf16, each in its own process, with wall time and peak RSS.

Not part of CI (it takes a long while and ~10 GB of disk). Usage:
  .venv-diffusion/bin/python tools/diffusion/bench.py [--work DIR] [--steps 20]
Figures are printed as a table and written to DIR/bench.json.
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
    (folder / "scheduler").mkdir(parents=True, exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(SD1_SCHEDULER))
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionInpaintPipeline"}))


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def torch_run(checkpoint: Path, dtype_name: str, steps: int):
    """diffusers' inpainting pipeline on PyTorch; prints one JSON line."""
    import numpy as np
    import torch
    from diffusers import (AutoencoderKL, DPMSolverMultistepScheduler, StableDiffusionInpaintPipeline,
                           UNet2DConditionModel)
    from PIL import Image
    from transformers import CLIPTextModel, CLIPTokenizer

    torch.set_num_threads(os.cpu_count())
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    pipe = StableDiffusionInpaintPipeline(
        vae=AutoencoderKL.from_pretrained(checkpoint / "vae", torch_dtype=dtype),
        text_encoder=CLIPTextModel.from_pretrained(checkpoint / "text_encoder", torch_dtype=dtype),
        tokenizer=CLIPTokenizer.from_pretrained(checkpoint / "tokenizer"),
        unet=UNet2DConditionModel.from_pretrained(checkpoint / "unet", torch_dtype=dtype),
        scheduler=DPMSolverMultistepScheduler.from_config(json.loads((checkpoint / "scheduler" / "scheduler_config.json").read_text())),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    out = {}
    with torch.inference_mode():
        sample = torch.randn(2, 9, 64, 64, dtype=dtype)
        states = torch.randn(2, 77, 768, dtype=dtype)
        t = torch.tensor([500.0, 500.0], dtype=dtype)
        pipe.unet(sample, t, states)  # warm-up
        start = time.perf_counter()
        pipe.unet(sample, t, states)
        out["unet_step_s"] = time.perf_counter() - start
        image = torch.randn(1, 3, 512, 512, dtype=dtype)
        start = time.perf_counter()
        pipe.vae.encode(image)
        out["vae_encode_s"] = time.perf_counter() - start
        latent = torch.randn(1, 4, 64, 64, dtype=dtype)
        start = time.perf_counter()
        pipe.vae.decode(latent)
        out["vae_decode_s"] = time.perf_counter() - start
    img = Image.fromarray((np.random.default_rng(0).random((512, 512, 3)) * 255).astype("uint8"))
    mask = Image.fromarray(np.where(np.arange(512)[None, :] > 256, 255, 0).repeat(512, 0).astype("uint8"))
    start = time.perf_counter()
    pipe(prompt="a bottle on a table", image=img, mask_image=mask, num_inference_steps=steps,
         guidance_scale=7.5, generator=torch.Generator("cpu").manual_seed(1))
    out["inpaint_s"] = time.perf_counter() - start
    out["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(out))


def child(args):
    """Runs a measurement in its own process (peak RSS is per process)."""
    result = subprocess.run(args, capture_output=True, text=True, check=True)
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    # Each peer's figures as soon as it finishes: a full run takes a long while.
    print(json.dumps({"command": args[0], **figures}), flush=True)
    return figures


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=ROOT / "target" / "bench-sd15")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--torch", choices=["f32", "bf16"], help=argparse.SUPPRESS)
    parser.add_argument("--skip-torch", action="store_true")
    parser.add_argument("--no-build", action="store_true", help="use an already built bench example")
    args = parser.parse_args()
    checkpoint, onnx_dir = args.work / "checkpoint", args.work / "onnx"
    if args.torch:
        return torch_run(checkpoint, args.torch, args.steps)
    build_checkpoint(checkpoint)
    if not (onnx_dir / "model_index.json").exists():
        from export_onnx import export
        export(checkpoint, onnx_dir)
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-p", "backdrop-diffusion", "--example", "bench"],
                       cwd=ROOT, check=True)
    results = {"backdrop": child([str(ROOT / "target" / "release" / "examples" / "bench"), str(onnx_dir),
                                  str(args.steps)])}
    if not args.skip_torch:
        for dtype in ("f32", "bf16"):
            results[f"pytorch-{dtype}"] = child([sys.executable, __file__, "--work", str(args.work),
                                                 "--steps", str(args.steps), "--torch", dtype])
    (args.work / "bench.json").write_text(json.dumps(results, indent=2))
    keys = ["unet_step_s", "vae_encode_s", "vae_decode_s", "inpaint_s", "peak_rss_mb"]
    print(f"{'':14}" + "".join(f"{k:>15}" for k in keys))
    for name, r in results.items():
        print(f"{name:14}" + "".join(f"{r.get(k, float('nan')):>15.2f}" for k in keys))
    if "pytorch-bf16" in results:
        ratio = results["backdrop"]["inpaint_s"] / results["pytorch-bf16"]["inpaint_s"]
        print(f"end to end vs PyTorch bf16: {ratio:.2f}x (target <= 0.9x)")


if __name__ == "__main__":
    main()
