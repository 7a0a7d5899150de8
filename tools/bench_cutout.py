#!/usr/bin/env python3
"""Automatic cut-out: Backdrop against rembg's Python pipeline on the same u2netp model.

Both cut the same SIDE x SIDE photo out, several times after one warm-up run, in the same
process tree and with the same ONNX Runtime library:

- backdrop: the `bench_segment` example, `OnnxSegmenter::segment` (resize to 320, the
  network, guided-filter refinement of the mask to full size) -- the full-size matte;
- rembg predict: `session.predict(img)` (resize to 320, the network, LANCZOS resize of the
  mask to full size) -- the full-size mask;
- rembg remove: `remove(img, session=...)`, predict plus the RGBA cut-out.

It prints the medians, the ratio rembg / backdrop, and the agreement of the two mattes
(IoU of alpha >= 128, mean absolute alpha difference). Run through tools/bench-cutout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from rembg import new_session, remove


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    parser.add_argument("--photo", required=True)
    parser.add_argument("--side", type=int, default=2048)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        matte_path = Path(tmp) / "backdrop-matte.png"
        out = subprocess.run(
            [args.binary, args.photo, "--side", str(args.side), "--runs", str(args.runs),
             "--matte", str(matte_path)],
            check=True, capture_output=True, text=True,
        )
        ours = json.loads(out.stdout.strip().splitlines()[-1])
        photo = Image.open(ours["files"]["photo"]).convert("RGB")
        photo.load()
        ours_matte = np.asarray(Image.open(matte_path)).astype(np.float32) / 255.0

    session = new_session("u2netp")
    session.predict(photo)  # warm-up: the first run allocates
    predict_ms, remove_ms = [], []
    for _ in range(args.runs):
        started = time.perf_counter()
        mask = session.predict(photo)[0]
        predict_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        remove(photo, session=session)
        remove_ms.append((time.perf_counter() - started) * 1000)
    theirs = np.asarray(mask).astype(np.float32) / 255.0

    a, b = ours_matte >= 0.5, theirs >= 0.5
    iou = (a & b).sum() / max((a | b).sum(), 1)
    mad = float(np.abs(ours_matte - theirs).mean())

    ours_ms = ours["median_ms"]
    rows = [
        ("backdrop segment (matte)", ours_ms, ours["runs_ms"]),
        ("rembg predict (mask)", statistics.median(predict_ms), predict_ms),
        ("rembg remove (cut-out)", statistics.median(remove_ms), remove_ms),
    ]
    print(f"photo {args.photo} resized to {args.side}x{args.side}, {args.runs} runs each (median)")
    print(f"{'pipeline':<28} {'median ms':>10} {'x backdrop':>11}  runs")
    for name, median, runs in rows:
        ratio = median / ours_ms if ours_ms else float("nan")
        listed = ", ".join(f"{r:.0f}" for r in runs)
        print(f"{name:<28} {median:>10.0f} {ratio:>11.2f}  {listed}")
    print(f"backdrop network only: {ours['network_median_ms']:.0f} ms")
    print(f"matte agreement with rembg: IoU {iou:.3f}, mean |alpha difference| {mad:.3f}")


if __name__ == "__main__":
    main()
