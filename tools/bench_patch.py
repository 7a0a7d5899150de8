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
- dup: duplication, the share of the filled border covered by blocks of at least
  DUP_BLOCK x DUP_BLOCK pixels that are a near-copy of one place in the original (see
  `duplication`); the real border's own figure is printed as the reference;
- time: engine milliseconds for Backdrop as the example reports them, wall time of the
  `cv2.inpaint` call for OpenCV.

Beside them, `truth-shifted`: the real border moved SHIFT pixels down and right. It has
the photo's own detail and scores what real texture a little out of place scores, which
on textured photos is below Telea's smooth fill: the per-photo SSIM target cannot be met
there by any fill that keeps the detail without knowing the truth.

One more case has no truth: the shipped `examples/coffee.jpg` expanded as the README's
first `backdrop expand` does (half its width left and right, a fifth of its height up);
only its duplication is measured, and it joins the contact sheet.

`--before DIR` compares with an earlier run saved by `--keep DIR` (e.g. of the engine
before a change): its figures are printed beside today's and `--sheet PNG` writes a
contact sheet, one row per photo: the canvas, the truth, Telea, before and after.

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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

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
# The README's expansion of the shipped example: (left, right, up, down) as shares of
# the photo's sides, and the mask's growth into the photo (the CLI's default overlap).
WIDE = ("coffee-wide", os.path.join("examples", "coffee.jpg"), (0.5, 0.5, 0.2, 0.0), 8)
KEEP = 0.625  # share of each side kept as the original
MAX_SIDE = 1024
METHODS = ["backdrop-patch", "opencv-telea", "opencv-ns", "truth-shifted"]
# The shifted-truth reference: the real border moved by this many pixels down and right
# (wrapping around the photo). It is what a fill with the photo's real texture, misplaced
# by a little, scores: the SSIM a detailed fill can hope for, beside Telea's smooth one.
SHIFT = 16

# Duplication: a block of the fill this large (pixels a side) whose best match in the
# original differs by an RMS of at most DUP_RMS (grey levels) or DUP_REL of the block's
# own standard deviation, whichever is larger, is a near-copy. Blocks flatter than
# DUP_MIN_STD are skipped: repeating a stretch of plain sky or wall is not an object.
DUP_BLOCK = 24
DUP_STRIDE = 12
DUP_RMS = 1.5
DUP_REL = 0.1
DUP_MIN_STD = 6.0


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


def wide_case() -> tuple[np.ndarray, np.ndarray]:
    """The README's expansion of examples/coffee.jpg: canvas and grown mask."""
    _, path, (left, right, up, down), grow = WIDE
    photo = cv2.cvtColor(cv2.imread(os.path.join(ROOT, path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    h, w = photo.shape[:2]
    l, r, u, d = round(w * left), round(w * right), round(h * up), round(h * down)
    canvas = np.zeros((h + u + d, w + l + r, 4), np.uint8)
    canvas[u : u + h, l : l + w, :3] = photo
    canvas[u : u + h, l : l + w, 3] = 255
    open_ = (canvas[..., 3] < 255).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
    mask = cv2.dilate(open_, kernel) * 255
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


def duplication(result: np.ndarray, region: np.ndarray) -> float:
    """Share of the filled region covered by near-copies of the original (see DUP_*).

    Every DUP_BLOCK square of the fill (on a DUP_STRIDE grid) that is not flat is looked
    up in the original (the known area's bounding box, the fill's own pixels excluded)
    by exhaustive template matching; the blocks whose best match is within the near-copy
    tolerance are marked, and the marked share of the filled pixels is returned.
    """
    grey = cv2.cvtColor(result, cv2.COLOR_RGB2GRAY).astype(np.float32)
    ys, xs = np.where(~region)
    if len(ys) == 0:
        return 0.0
    original = grey[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    b = DUP_BLOCK
    if original.shape[0] < b or original.shape[1] < b:
        return 0.0
    inside = cv2.integral(region.astype(np.uint8))
    covered = np.zeros(region.shape, bool)
    h, w = region.shape
    for y in range(0, h - b + 1, DUP_STRIDE):
        for x in range(0, w - b + 1, DUP_STRIDE):
            filled = inside[y + b, x + b] - inside[y, x + b] - inside[y + b, x] + inside[y, x]
            if filled < b * b:
                continue
            block = grey[y : y + b, x : x + b]
            sd = float(block.std())
            if sd < DUP_MIN_STD:
                continue
            best = float(cv2.matchTemplate(original, block, cv2.TM_SQDIFF).min())
            rms = np.sqrt(max(best, 0.0) / (b * b))
            if rms <= max(DUP_RMS, DUP_REL * sd):
                covered[y : y + b, x : x + b] = True
    return float(covered[region].mean())


def metrics(result: np.ndarray, truth: np.ndarray | None, region: np.ndarray) -> dict:
    m = {"dup": duplication(result, region)}
    if truth is None:
        return m
    diff = result.astype(np.float64) - truth.astype(np.float64)
    mse = float(np.mean(diff[region] ** 2))
    m["psnr"] = float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)
    _, ssim_map = structural_similarity(
        truth, result, channel_axis=2, data_range=255, full=True
    )
    m["ssim"] = float(np.mean(ssim_map[region]))
    m["detail"] = gradient_energy(result, region) / max(gradient_energy(truth, region), 1e-9)
    return m


def save(path: str, rgb: np.ndarray) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def read(path: str) -> np.ndarray | None:
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    return None if img is None else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def canvas_view(canvas: np.ndarray) -> np.ndarray:
    """The canvas with its transparent area shown as a grey checkerboard."""
    h, w = canvas.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    checks = np.where(((yy // 16 + xx // 16) % 2 == 0)[..., None], 200, 150).astype(np.float32)
    alpha = canvas[..., 3:4].astype(np.float32) / 255.0
    return (canvas[..., :3] * alpha + checks * (1.0 - alpha)).round().astype(np.uint8)


def contact_sheet(rows: list[tuple[str, list[tuple[str, np.ndarray | None]]]], path: str,
                  height: int = 200) -> None:
    """One row per case, each image scaled to `height`, captioned; written as PNG."""
    tiles_rows = []
    for name, tiles in rows:
        scaled = []
        for caption, img in tiles:
            if img is None:
                continue
            h, w = img.shape[:2]
            tile = cv2.resize(img, (max(1, round(w * height / h)), height),
                              interpolation=cv2.INTER_AREA)
            bar = np.full((22, tile.shape[1], 3), 255, np.uint8)
            cv2.putText(bar, f"{name}: {caption}", (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                        (0, 0, 0), 1, cv2.LINE_AA)
            scaled.append(np.concatenate([bar, tile], axis=0))
            scaled.append(np.full((height + 22, 4, 3), 255, np.uint8))
        tiles_rows.append(np.concatenate(scaled, axis=1))
    width = max(r.shape[1] for r in tiles_rows)
    padded = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255)
              for r in tiles_rows]
    save(path, np.concatenate(padded, axis=0))


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", required=True, help="path of the patch_fill example")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", nargs="*", help="photo names to run (default: all)")
    ap.add_argument("--keep", help="directory to save canvases, results and figures in")
    ap.add_argument("--before", help="directory of an earlier run saved with --keep")
    ap.add_argument("--sheet", help="PNG path of the before/after contact sheet")
    ap.add_argument("--runs", type=int, default=5, help="runs of the 1024x1024 timing")
    args = ap.parse_args()

    before = {}
    if args.before:
        with open(os.path.join(args.before, "figures.json")) as f:
            before = {(r["photo"], r["method"]): r for r in json.load(f)["rows"]}

    cases = [(name, load(name)) for name, _ in PHOTOS if not args.only or name in args.only]
    if not args.only or WIDE[0] in args.only:
        cases.append((WIDE[0], None))
    rows = []
    sheet_rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, truth in cases:
            if truth is None:
                canvas, mask = wide_case()
            else:
                canvas, mask = expansion_case(truth)
            region = mask > 0
            results = {"backdrop-patch": run_backdrop(args.binary, canvas, mask, args.seed, tmp)}
            if truth is not None:
                results["opencv-telea"] = run_opencv(canvas, mask, cv2.INPAINT_TELEA)
                results["opencv-ns"] = run_opencv(canvas, mask, cv2.INPAINT_NS)
                shifted = np.where(region[..., None], np.roll(truth, (SHIFT, SHIFT), (0, 1)), truth)
                results["truth-shifted"] = (shifted, 0.0)
                rows.append({"photo": name, "method": "truth", "ms": 0.0,
                             **metrics(truth, None, region)})
            h, w = mask.shape
            for method, (out, ms) in results.items():
                m = metrics(out, truth, region)
                rows.append({"photo": name, "size": f"{w}x{h}", "method": method, "ms": ms, **m})
                if args.keep:
                    save(os.path.join(args.keep, f"{name}-{method}.png"), out)
            if args.keep:
                save(os.path.join(args.keep, f"{name}-canvas.png"), canvas_view(canvas))
                if truth is not None:
                    save(os.path.join(args.keep, f"{name}-truth.png"), truth)
            previous = (read(os.path.join(args.before, f"{name}-backdrop-patch.png"))
                        if args.before else None)
            sheet_rows.append((name, [
                ("canvas", canvas_view(canvas)),
                ("truth", truth),
                ("Telea", results.get("opencv-telea", (None, 0))[0]),
                ("before", previous),
                ("after" if args.before else "patch", results["backdrop-patch"][0]),
            ]))
            print(f"  {name}: done", file=sys.stderr, flush=True)

    timing = None
    if not args.only:
        timing = time_1024(args.binary, args.seed, args.runs)

    header = (f"{'photo':<18} {'size':>9} {'method':<15} {'PSNR dB':>8} {'SSIM':>6} "
              f"{'detail':>7} {'dup':>6} {'ms':>9}")
    print(header)
    print("-" * len(header))
    for r in rows:
        if r["method"] == "truth":
            continue
        print(
            f"{r['photo']:<18} {r['size']:>9} {r['method']:<15} {fmt(r.get('psnr'), '8.2f'):>8} "
            f"{fmt(r.get('ssim'), '6.3f'):>6} {fmt(r.get('detail'), '7.3f'):>7} "
            f"{r['dup']:>6.3f} {r['ms']:>9.1f}"
        )
    print("-" * len(header))
    for method in METHODS:
        sel = [r for r in rows if r["method"] == method and "ssim" in r]
        if not sel:
            continue
        mean = {k: float(np.mean([r[k] for r in sel])) for k in ("psnr", "ssim", "detail", "dup", "ms")}
        print(
            f"{'mean':<18} {'':>9} {method:<15} {mean['psnr']:>8.2f} "
            f"{mean['ssim']:>6.3f} {mean['detail']:>7.3f} {mean['dup']:>6.3f} {mean['ms']:>9.1f}"
        )
    print_targets(rows, before)
    if timing:
        print()
        print(
            "backdrop-patch, 1024x1024 expansion of a 640x640 centre (astronaut scaled up): "
            f"engine ms over {len(timing)} runs: min {min(timing):.1f}, "
            f"median {float(np.median(timing)):.1f}, max {max(timing):.1f}"
        )
    if args.keep:
        with open(os.path.join(args.keep, "figures.json"), "w") as f:
            json.dump({"rows": rows, "timing_1024_ms": timing}, f, indent=1)
    if args.sheet:
        contact_sheet(sheet_rows, args.sheet)
        print(f"\ncontact sheet: {args.sheet}")
    return 0


def print_targets(rows: list[dict], before: dict) -> None:
    """Per photo: SSIM against Telea's, detail, duplication before and after."""
    by = {(r["photo"], r["method"]): r for r in rows}
    photos = list(dict.fromkeys(r["photo"] for r in rows))
    print()
    print("targets: SSIM >= 0.95 x Telea's, detail >= 0.7, dup below the engine's before; "
          f"sh/Tel: the truth shifted by {SHIFT} px over Telea's SSIM")
    header = (f"{'photo':<18} {'Telea':>6} {'SSIM b':>6} {'SSIM a':>6} {'a/Tel':>6} "
              f"{'det b':>6} {'det a':>6} {'dup b':>6} {'dup a':>6} {'dup tr':>6} {'sh/Tel':>6}")
    print(header)
    print("-" * len(header))
    ratios, details, dups_a, dups_b = [], [], [], []
    for photo in photos:
        after = by.get((photo, "backdrop-patch"), {})
        old = before.get((photo, "backdrop-patch"), {})
        telea = by.get((photo, "opencv-telea"), {})
        truth = by.get((photo, "truth"), {})
        shifted = by.get((photo, "truth-shifted"), {})
        ratio = after["ssim"] / telea["ssim"] if "ssim" in after and telea.get("ssim") else None
        shifted_ratio = shifted["ssim"] / telea["ssim"] if "ssim" in shifted and telea.get("ssim") else None
        if ratio is not None:
            ratios.append(ratio)
            details.append(after["detail"])
        dups_a.append(after.get("dup", 0.0))
        if "dup" in old:
            dups_b.append(old["dup"])
        print(
            f"{photo:<18} {fmt(telea.get('ssim'), '6.3f'):>6} {fmt(old.get('ssim'), '6.3f'):>6} "
            f"{fmt(after.get('ssim'), '6.3f'):>6} {fmt(ratio, '6.3f'):>6} "
            f"{fmt(old.get('detail'), '6.3f'):>6} {fmt(after.get('detail'), '6.3f'):>6} "
            f"{fmt(old.get('dup'), '6.3f'):>6} {fmt(after.get('dup'), '6.3f'):>6} "
            f"{fmt(truth.get('dup'), '6.3f'):>6} {fmt(shifted_ratio, '6.3f'):>6}"
        )
    print("-" * len(header))
    if ratios:
        tel = np.mean([by[(p, "opencv-telea")]["ssim"] for p in photos if (p, "opencv-telea") in by])
        aft = np.mean([by[(p, "backdrop-patch")]["ssim"] for p in photos if (p, "opencv-telea") in by])
        print(f"mean SSIM {aft:.3f} = {aft / tel:.3f} x Telea's {tel:.3f}; "
              f"mean detail {np.mean(details):.3f}; "
              f"mean dup {np.mean(dups_a):.3f}"
              + (f" (before {np.mean(dups_b):.3f})" if dups_b else ""))


def time_1024(binary: str, seed: int, runs: int) -> list[float]:
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
