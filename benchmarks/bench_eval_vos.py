"""`samkit eval vos` on generated videos: seconds and cores, and (optionally) Meta's evaluator beside it.

Writes a DAVIS-layout ground truth and a jittered prediction (drifting ellipses, objects that appear
late, misses, false alarms; DAVIS's 480x854 frames by default) and times ``samkit.eval.vos`` with 1
and N worker processes. With ``--meta-dir`` (a checkout's ``sav_dataset/`` folder) and
``--meta-python`` (an interpreter with opencv-python-headless, scikit-image, tqdm and pillow),
Meta's ``sav_evaluator.py`` scores the same folders with N processes; its ``results.csv`` must be
byte-identical to samkit's.

    python3 benchmarks/bench_eval_vos.py [--videos 100] [--frames 50] [--objects 3] [--processes 2]
        [--meta-dir sam2/sav_dataset --meta-python /path/to/python]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

PALETTE = bytes(np.random.default_rng(0).integers(0, 256, 768, dtype=np.uint8))


def _save(path: Path, labels: np.ndarray) -> None:
    im = Image.fromarray(labels, mode="P")
    im.putpalette(PALETTE)
    im.save(path, optimize=False, compress_level=1)


def generate(root: Path, videos: int, frames: int, objects: int, h: int, w: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    for v in range(videos):
        gt_dir, pred_dir = root / "gt" / f"video{v:03d}", root / "pred" / f"video{v:03d}"
        gt_dir.mkdir(parents=True)
        pred_dir.mkdir(parents=True)
        centre = rng.uniform([0.2 * h, 0.2 * w], [0.8 * h, 0.8 * w], (objects, 2))
        speed = rng.uniform(-3, 3, (objects, 2))
        radii = rng.uniform([0.05 * h, 0.05 * w], [0.2 * h, 0.15 * w], (objects, 2))
        start = rng.integers(0, frames // 3, objects)
        start[0] = 0
        for t in range(frames):
            gt = np.zeros((h, w), np.uint8)
            pred = np.zeros((h, w), np.uint8)
            for o in range(objects):
                cy, cx = centre[o] + speed[o] * t
                ry, rx = radii[o]
                if t >= start[o]:
                    gt[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = o + 1
                if rng.random() < 0.95:
                    dy, dx = rng.normal(0, 3, 2)
                    pred[((yy - cy - dy) / (ry * 1.05)) ** 2 + ((xx - cx - dx) / rx) ** 2 <= 1] = o + 1
            _save(gt_dir / f"{t:05d}.png", gt)
            _save(pred_dir / f"{t:05d}.png", pred)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=100)
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--objects", type=int, default=3)
    ap.add_argument("--size", default="480x854", help="HxW of the frames")
    ap.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--meta-dir", default=None, help="Meta's sav_dataset/ folder (has sav_evaluator.py)")
    ap.add_argument("--meta-python", default=None, help="python with opencv, scikit-image, tqdm, pillow")
    ap.add_argument("--keep", default=None, help="generate into this folder and keep it")
    args = ap.parse_args()

    from samkit.eval import vos

    h, w = (int(v) for v in args.size.split("x"))
    root = Path(args.keep or tempfile.mkdtemp(prefix="bench_eval_vos_"))
    t = time.perf_counter()
    if not (root / "gt").is_dir():
        generate(root, args.videos, args.frames, args.objects, h, w)
    gen_s = time.perf_counter() - t
    gt, pred = root / "gt", root / "pred"
    rows = {}
    for n in sorted({1, args.processes}):
        t0, c0 = time.perf_counter(), os.times()
        r = vos(gt, pred, processes=n)
        wall, c1 = time.perf_counter() - t0, os.times()
        cpu = (c1.user - c0.user) + (c1.system - c0.system) + (c1.children_user - c0.children_user)
        cpu += c1.children_system - c0.children_system
        rows[f"samkit, {n} process(es)"] = {"seconds": wall, "cores_used": cpu / wall, "J&F": r.jf}
        ours_csv = (pred / "results.csv").read_text()
    if args.meta_dir and args.meta_python:
        cmd = [args.meta_python, str(Path(args.meta_dir) / "sav_evaluator.py"), "--gt_root", str(gt)]
        cmd += ["--pred_root", str(pred), "-n", str(args.processes), "-q"]
        t0, c0 = time.perf_counter(), os.times()
        subprocess.run(cmd, check=True, cwd=args.meta_dir, stdout=subprocess.DEVNULL)
        wall, c1 = time.perf_counter() - t0, os.times()
        cpu = (c1.children_user - c0.children_user) + (c1.children_system - c0.children_system)
        meta_csv = (pred / "results.csv").read_text()
        rows[f"Meta sav_evaluator, {args.processes} process(es)"] = {
            "seconds": wall,
            "cores_used": cpu / wall,
            "results.csv identical": meta_csv == ours_csv,
        }
    objects = len(ours_csv.splitlines()) - 2
    print(
        f"{args.videos} videos x {args.frames} frames of {h}x{w}, {objects} objects (generated in {gen_s:.0f} s)"
    )
    for name, row in rows.items():
        extra = ", ".join(f"{k} {v}" for k, v in row.items() if k not in ("seconds", "cores_used"))
        print(f"{name:<40} {row['seconds']:7.1f} s  {row['cores_used']:.2f} cores  {extra}")
    print(
        "JSON " + json.dumps({"videos": args.videos, "frames": args.frames, "size": args.size, "rows": rows})
    )
    if not args.keep:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
