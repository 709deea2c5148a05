"""Proof that `samkit train` learns: fine-tune perturbed sam2.1-hiera-tiny weights (the reference's
random initialization plus seeded noise: no pretrained weights here) on generated textured shapes,
on the CPU, for a fixed time budget; report held-out 1-click mIoU, box mIoU and video J / F / J&F
before and after, and plot the loss curve.

    python benchmarks/train_shapes.py --minutes 15 --out benchmarks/results/train_shapes

Writes OUT/report.json and OUT/loss.png (and the run's checkpoint and metrics.jsonl).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import oracle  # noqa: E402
import samkit  # noqa: E402
from samkit.configs import get_config  # noqa: E402
from samkit.train import OptimSettings, PromptSimulation, TrainSettings, fit  # noqa: E402
from samkit.train.batch import collate  # noqa: E402
from samkit.train.forward import train_forward  # noqa: E402
from samkit.train.prompting import box_prompt, click_center  # noqa: E402
from samkit.train.synthetic import Shapes  # noqa: E402


def iou(pred: torch.Tensor, gt: torch.Tensor) -> float:
    inter = (pred & gt).sum().item()
    union = (pred | gt).sum().item()
    return 1.0 if union == 0 else inter / union


def boundary_f(pred: np.ndarray, gt: np.ndarray) -> float:
    """DAVIS boundary F, as Meta's SA-V evaluator computes it (samkit.eval)."""
    from samkit.eval import boundary_f as davis_f

    return davis_f(pred, gt)


@torch.no_grad()
def evaluate(model, images: Shapes, videos: Shapes) -> dict[str, float]:
    """1-click (centre of the object) and box mIoU on images; J, F, J&F on videos prompted with their
    first frame's masks (frames after the first)."""
    model.eval()
    rng = np.random.default_rng(0)
    click_ious, box_ious = [], []
    for i in range(len(images)):
        batch = collate([images[i]])
        gt = batch.masks[0].unsqueeze(1)
        for kind in ("click", "box"):
            torch.manual_seed(0)
            pts = click_center(gt, None) if kind == "click" else box_prompt(gt, noise=0.0)
            from samkit.train.prompting import ClipPrompts

            plan = ClipPrompts(True, [0], {0: pts}, {}, [], 1)
            sim = PromptSimulation.evaluation()
            res, _ = train_forward(model, batch, sim, rng, prompts=plan)
            pred = res[0].pred_masks_high_res[:, 0] > 0
            vals = [iou(pred[o], batch.masks[0, o]) for o in range(pred.shape[0])]
            (click_ious if kind == "click" else box_ious).extend(vals)
    js, fs = [], []
    for i in range(len(videos)):
        batch = collate([videos[i]])
        res, _ = train_forward(model, batch, PromptSimulation.evaluation(), rng)
        for t in range(1, batch.num_frames):
            pred = res[t].pred_masks_high_res[:, 0] > 0
            for o in range(pred.shape[0]):
                js.append(iou(pred[o], batch.masks[t, o]))
                fs.append(boundary_f(pred[o].numpy(), batch.masks[t, o].numpy()))
    model.train()
    j, f = float(np.mean(js)), float(np.mean(fs))
    return {
        "click_miou": float(np.mean(click_ious)),
        "box_miou": float(np.mean(box_ious)),
        "video_J": j,
        "video_F": f,
        "video_J&F": (j + f) / 2,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=15.0, help="training budget (default 15)")
    ap.add_argument("--size", type=int, default=128, help="training resolution (default 128)")
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument(
        "--steps", type=int, default=100000, help="upper bound on steps (the budget usually ends it)"
    )
    ap.add_argument(
        "--corrections",
        type=int,
        default=7,
        help="correction clicks per corrected frame (Meta's 7; fewer makes a step cheaper)",
    )
    ap.add_argument("--no-augment", action="store_true", help="train without augmentation (learns faster)")
    ap.add_argument("--out", default="benchmarks/results/train_shapes")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 4)))

    variant = "sam2.1-hiera-tiny"
    ckpt = oracle.checkpoint(variant)
    cfg = dataclasses.replace(get_config(variant), image_size=args.size)
    model = samkit.load_model(cfg, checkpoint=ckpt, device="cpu")
    s = args.size
    from samkit.train import AugmentSettings

    train_aug = AugmentSettings.none(s) if args.no_augment else AugmentSettings(size=s)
    train_images = Shapes(400, source_size=s, data_seed=1, augment=train_aug)
    train_videos = Shapes(100, num_frames=4, source_size=s, data_seed=2, augment=train_aug)

    val_images = Shapes(40, source_size=s, data_seed=101, augment=AugmentSettings.none(s))
    val_videos = Shapes(10, num_frames=6, source_size=s, data_seed=102, augment=AugmentSettings.none(s))

    t0 = time.perf_counter()
    before = evaluate(model, val_images, val_videos)
    eval_s = time.perf_counter() - t0
    print("before", json.dumps(before), f"({eval_s:.0f} s)", flush=True)

    deadline = time.perf_counter() + args.minutes * 60

    class Budget(Exception):
        pass

    def stop_at_budget(step, record):
        if time.perf_counter() > deadline:
            raise Budget

    settings = TrainSettings(
        steps=args.steps,
        optim=OptimSettings(lr=args.lr, encoder_lr=args.lr),
        prompts=PromptSimulation(num_correction_points=args.corrections),
        precision="fp32",
        save_every=10**9,
        progress=False,
        seed=0,
    )
    run = out / "run"
    if run.exists():
        import shutil

        shutil.rmtree(run)
    start = time.perf_counter()
    try:
        fit(model, [(train_images, 4), (train_videos, 1)], settings, out=run, on_step=stop_at_budget)
    except Budget:
        pass
    train_s = time.perf_counter() - start
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    after = evaluate(model, val_images, val_videos)
    print("after", json.dumps(after), flush=True)
    report = {
        "model": variant,
        "weights": "reference init + seeded noise (oracle.checkpoint), no pretraining",
        "resolution": s,
        "lr": args.lr,
        "correction_clicks": args.corrections,
        "augment": not args.no_augment,
        "train_set": "400 images (1-3 shapes) + 100 clips of 4 frames, generated; batches of 4 images or 1 clip",
        "held_out": "40 images (1-click at the object's centre; box without noise), 10 clips of 6 frames (mask on frame 0)",
        "steps": records[-1]["step"] if records else 0,
        "train_minutes": train_s / 60,
        "threads": torch.get_num_threads(),
        "before": before,
        "after": after,
        "samkit_commit": _commit(),
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    _plot(records, out / "loss.png")
    print(json.dumps(report, indent=2))


def _commit() -> str:
    import subprocess

    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip()
    except OSError:
        return "unknown"


def _plot(records, path: Path) -> None:
    """The loss per step and its running mean, as a PNG (drawn with PIL: no plotting library needed)."""
    from PIL import Image, ImageDraw

    losses = np.array([r["loss"] for r in records if "loss" in r])
    if len(losses) == 0:
        return
    k = max(1, len(losses) // 50)
    smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
    w, h, pad = 800, 400, 50
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    hi = float(np.percentile(losses, 99))
    lo = float(losses.min())

    def xy(i, v, n):
        x = pad + (w - 2 * pad) * i / max(n - 1, 1)
        y = h - pad - (h - 2 * pad) * (min(v, hi) - lo) / max(hi - lo, 1e-9)
        return x, y

    d.line([xy(i, v, len(losses)) for i, v in enumerate(losses)], fill=(180, 180, 220), width=1)
    d.line([xy(i + k // 2, v, len(losses)) for i, v in enumerate(smooth)], fill=(20, 40, 160), width=2)
    d.rectangle([pad, pad, w - pad, h - pad], outline="black")
    d.text(
        (pad, 10),
        f"training loss per step (light) and its mean over {k} steps; {len(losses)} steps",
        fill="black",
    )
    d.text((pad, h - pad + 10), "step 1", fill="black")
    d.text((w - pad - 60, h - pad + 10), f"step {len(losses)}", fill="black")
    d.text((5, pad), f"{hi:.1f}", fill="black")
    d.text((5, h - pad - 10), f"{lo:.1f}", fill="black")
    img.save(path)


if __name__ == "__main__":
    main()
