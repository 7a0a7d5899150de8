#!/usr/bin/env python3
"""Benchmark Backdrop's `patch` engine against OpenCV inpainting on photo expansion.

For each photo shipped inside scikit-image: the central 62.5 % of each side is the
"original"; the canvas restores the full photo size with a transparent border to
generate, so the uncropped photo is the truth for the new border. Backdrop (through the
`patch_fill` example binary) and OpenCV's `cv2.inpaint` (Telea and Navier-Stokes,
radius 3) fill the same canvas and mask. Measured over the filled border only:

- PSNR and SSIM against the truth (higher = closer; both reward blur, since a blurred
  guess is "closer" on average than a sharp wrong one);
- detail: mean squared Sobel gradient magnitude of the fill over that of the truth in
  the same region (1.0 = as much detail as the real border; near 0 = smeared);
- time: engine milliseconds for Backdrop as the example reports them, wall time of the
  `cv2.inpaint` call for OpenCV.

Run through `tools/bench-patch`, which sets up the environment and builds the binary.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np
import skimage.data
from skimage.metrics import structural_similarity

# (name, licence) of photos that ship inside the scikit-image wheel (no download).
PHOTOS = [
    ("astronaut", "public domain (NASA)"),
    ("coffee", "CC0 (Rachel Michetti)"),
    ("chelsea", "CC0 (Stefan van der Walt)"),
    ("rocket", "public domain (SpaceX)"),
    ("camera", "CC0 (Lav Varshney)"),
    ("hubble_deep_field", "public domain (NASA)"),
    ("brick", "CC0 (CC0Textures)"),
    ("gravel", "CC0 (CC0Textures)"),
]
KEEP = 0.625  # share of each side kept as the original
MAX_SIDE = 1024
METHODS = ["backdrop-patch", "opencv-telea", "opencv-ns"]


def load(name: str) -> np.ndarray:
    img = getattr(skimage.data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    img = img[..., :3].astype(np.uint8)
    h, w = img.shape[:2]
    if max(h, w) > MAX_SIDE:
        s = MAX_SIDE / max(h, w)
        img = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    return img


def expansion_case(truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The RGBA canvas (centre crop opaque, border transparent) and the mask (255 = fill)."""
    h, w = truth.shape[:2]
    ch, cw = round(h * KEEP), round(w * KEEP)
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    canvas = np.zeros((h, w, 4), np.uint8)
    canvas[y0 : y0 + ch, x0 : x0 + cw, :3] = truth[y0 : y0 + ch, x0 : x0 + cw]
    canvas[y0 : y0 + ch, x0 : x0 + cw, 3] = 255
    mask = np.full((h, w), 255, np.uint8)
    mask[y0 : y0 + ch, x0 : x0 + cw] = 0
    return canvas, mask


def run_backdrop(binary: str, canvas: np.ndarray, mask: np.ndarray, seed: int, tmp: str):
    cpath, mpath, opath = (os.path.join(tmp, f) for f in ("canvas.png", "mask.png", "out.png"))
    cv2.imwrite(cpath, cv2.cvtColor(canvas, cv2.COLOR_RGBA2BGRA))
    cv2.imwrite(mpath, mask)
    res = subprocess.run(
        [binary, cpath, mpath, opath, str(seed)], capture_output=True, text=True, check=True
    )
    ms = json.loads(res.stdout.strip().splitlines()[-1])["ms"]
    out = cv2.cvtColor(cv2.imread(opath, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return out, ms


def run_opencv(canvas: np.ndarray, mask: np.ndarray, flag: int):
    bgr = cv2.cvtColor(canvas[..., :3], cv2.COLOR_RGB2BGR)
    start = time.perf_counter()
    out = cv2.inpaint(bgr, mask, 3, flag)
    ms = (time.perf_counter() - start) * 1000.0
    return cv2.cvtColor(out, cv2.COLOR_BGR2RGB), ms


def gradient_energy(rgb: np.ndarray, region: np.ndarray) -> float:
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float64)
    gx = cv2.Sobel(grey, cv2.CV_64F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_64F, 0, 1, ksize=3)
    return float(np.mean((gx * gx + gy * gy)[region]))


def metrics(result: np.ndarray, truth: np.ndarray, region: np.ndarray) -> dict:
    diff = result.astype(np.float64) - truth.astype(np.float64)
    mse = float(np.mean(diff[region] ** 2))
    psnr = float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)
    _, ssim_map = structural_similarity(
        truth, result, channel_axis=2, data_range=255, full=True
    )
    ssim = float(np.mean(ssim_map[region]))
    detail = gradient_energy(result, region) / max(gradient_energy(truth, region), 1e-9)
    return {"psnr": psnr, "ssim": ssim, "detail": detail}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", required=True, help="path of the patch_fill example")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", nargs="*", help="photo names to run (default: all)")
    ap.add_argument("--keep", help="directory to save canvases and results in")
    args = ap.parse_args()

    photos = [p for p in PHOTOS if not args.only or p[0] in args.only]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, _licence in photos:
            truth = load(name)
            canvas, mask = expansion_case(truth)
            region = mask > 0
            results = {
                "backdrop-patch": run_backdrop(args.binary, canvas, mask, args.seed, tmp),
                "opencv-telea": run_opencv(canvas, mask, cv2.INPAINT_TELEA),
                "opencv-ns": run_opencv(canvas, mask, cv2.INPAINT_NS),
            }
            h, w = truth.shape[:2]
            for method in METHODS:
                out, ms = results[method]
                m = metrics(out, truth, region)
                rows.append({"photo": name, "size": f"{w}x{h}", "method": method, "ms": ms, **m})
                if args.keep:
                    os.makedirs(args.keep, exist_ok=True)
                    path = os.path.join(args.keep, f"{name}-{method}.png")
                    cv2.imwrite(path, cv2.cvtColor(out, cv2.COLOR_RGB2BGR))
            if args.keep:
                cv2.imwrite(os.path.join(args.keep, f"{name}-truth.png"),
                            cv2.cvtColor(truth, cv2.COLOR_RGB2BGR))
            print(f"  {name}: done", file=sys.stderr, flush=True)

    timing = None
    if not args.only:
        timing = time_1024(args.binary, args.seed)

    header = f"{'photo':<18} {'size':>9} {'method':<15} {'PSNR dB':>8} {'SSIM':>6} {'detail':>7} {'ms':>9}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['photo']:<18} {r['size']:>9} {r['method']:<15} {r['psnr']:>8.2f} "
            f"{r['ssim']:>6.3f} {r['detail']:>7.3f} {r['ms']:>9.1f}"
        )
    print("-" * len(header))
    for method in METHODS:
        sel = [r for r in rows if r["method"] == method]
        mean = {k: float(np.mean([r[k] for r in sel])) for k in ("psnr", "ssim", "detail", "ms")}
        print(
            f"{'mean':<18} {'':>9} {method:<15} {mean['psnr']:>8.2f} "
            f"{mean['ssim']:>6.3f} {mean['detail']:>7.3f} {mean['ms']:>9.1f}"
        )
    if timing:
        print()
        print(
            "backdrop-patch, 1024x1024 expansion of a 640x640 centre (astronaut scaled up): "
            f"engine ms over {len(timing)} runs: min {min(timing):.1f}, "
            f"median {float(np.median(timing)):.1f}"
        )
    return 0


def time_1024(binary: str, seed: int, runs: int = 3) -> list[float]:
    """Engine milliseconds for the reference size: a 640x640 photo expanded to 1024x1024."""
    truth = cv2.resize(load("astronaut"), (1024, 1024), interpolation=cv2.INTER_CUBIC)
    canvas = np.zeros((1024, 1024, 4), np.uint8)
    canvas[192:832, 192:832, :3] = truth[192:832, 192:832]
    canvas[192:832, 192:832, 3] = 255
    mask = np.full((1024, 1024), 255, np.uint8)
    mask[192:832, 192:832] = 0
    with tempfile.TemporaryDirectory() as tmp:
        return [run_backdrop(binary, canvas, mask, seed, tmp)[1] for _ in range(runs)]


if __name__ == "__main__":
    sys.exit(main())
