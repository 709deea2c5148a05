"""Training step speed, samkit beside Meta's `SAM2Train` + `MultiStepMultiMasksAndIous`, in one run on
the same batch, the same prompts and the same weights: forward + loss + backward + clipping + AdamW
step, in float32 and under bfloat16 autocast, with each contender's peak memory.

    python benchmarks/bench_train.py [--variant sam2.1-hiera-tiny] [--size 512] [--runs 5]
                                     [--kind image|video|both] [--frames 8] [--device cpu]

Timings alternate between the contenders run by run and report medians. Peak memory: on CUDA
`max_memory_allocated`; on the CPU the peak RSS of a fresh process that builds one contender and
takes one step (`--memory`, slower; the reference's process also builds a samkit model to name its
parameter groups).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
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
from samkit.train.batch import collate  # noqa: E402
from samkit.train.forward import train_forward  # noqa: E402
from samkit.train.loss import MultiStepLoss  # noqa: E402
from samkit.train.optim import OptimSettings, make_optimizer, set_regularization  # noqa: E402
from samkit.train.prompting import PromptSimulation  # noqa: E402
from samkit.train.synthetic import Shapes  # noqa: E402


def make_batch(kind: str, size: int, frames: int):
    from samkit.train import AugmentSettings

    if kind == "image":
        ds = Shapes(1, source_size=size, max_objects=2, data_seed=3, augment=AugmentSettings.none(size))
    else:
        ds = Shapes(
            1,
            num_frames=frames,
            source_size=size,
            max_objects=2,
            data_seed=4,
            augment=AugmentSettings.none(size),
        )
    return collate([ds[0]])


class Contender:
    def __init__(self, name: str, variant: str, size: int, device: str) -> None:
        self.name = name
        ckpt = oracle.checkpoint(variant)
        if name == "reference":
            self.model = oracle.build_reference_train(variant, ckpt, size).to(device)
            self.loss = oracle.reference_train_loss()
        else:
            cfg = dataclasses.replace(get_config(variant), image_size=size)
            self.model = samkit.load_model(cfg, checkpoint=ckpt, device=device)
            set_regularization(
                self.model, 0.1, 0.0
            )  # as the reference built from its yaml: dropout, no drop path
            self.model.train()
            self.loss = MultiStepLoss()
        if name == "reference":
            from samkit.train.optim import param_groups

            mine = samkit.load_model(
                dataclasses.replace(get_config(variant), image_size=size), checkpoint=ckpt
            )
            params = dict(self.model.named_parameters())
            groups = [
                {"params": [params[n] for n in g["names"]], "lr": 1e-6, "weight_decay": g["weight_decay"]}
                for g in param_groups(mine, OptimSettings())
            ]
            self.opt = torch.optim.AdamW(groups)
        else:
            self.opt = make_optimizer(self.model, OptimSettings())

    def step(self, batch, seed: int, bf16: bool) -> None:
        device = next(self.model.parameters()).device
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            if self.name == "reference":
                self.model.rng = rng
                outs = self.model(batch)
                total = self.loss(outs, batch.masks)["core_loss"]
            else:
                results, _ = train_forward(self.model, batch, PromptSimulation(), rng)
                total = self.loss(results, batch.masks)["total"]
        total.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 0.1)
        self.opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()


def time_steps(contenders, batch, runs: int, bf16: bool) -> dict[str, float]:
    times: dict[str, list[float]] = {c.name: [] for c in contenders}
    for c in contenders:
        c.step(batch, 0, bf16)  # warm-up
    for r in range(runs):
        for c in contenders:
            t = time.perf_counter()
            c.step(batch, 1 + r, bf16)
            times[c.name].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def peak_memory_mb(name, args, kind, bf16) -> float:
    """Peak memory growth of one step, in a fresh process."""
    code = f"""
import sys, resource, torch
sys.path.insert(0, {str(ROOT / "benchmarks")!r})
import bench_train as b
c = b.Contender({name!r}, {args.variant!r}, {args.size}, {args.device!r})
batch = b.make_batch({kind!r}, {args.size}, {args.frames}).to({args.device!r})
if {args.device!r}.startswith("cuda"):
    torch.cuda.reset_peak_memory_stats()
    c.step(batch, 0, {bf16})
    print(torch.cuda.max_memory_allocated() / 2**20)
else:
    c.step(batch, 0, {bf16})
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # the process's peak, model included
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variant", default="sam2.1-hiera-tiny")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--kind", choices=("image", "video", "both"), default="both")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--memory", action="store_true", help="also measure peak memory (fresh processes)")
    args = ap.parse_args()
    oracle.setup_training()
    contenders = [Contender(n, args.variant, args.size, args.device) for n in ("reference", "samkit")]
    kinds = ("image", "video") if args.kind == "both" else (args.kind,)
    rows = []
    for kind in kinds:
        batch = make_batch(kind, args.size, args.frames).to(args.device)
        for prec in args.precisions.split(","):
            bf16 = prec == "bf16"
            t = time_steps(contenders, batch, args.runs, bf16)
            row = {"kind": kind, "precision": prec, **{f"{k}_s": v for k, v in t.items()}}
            row["speedup"] = t["reference"] / t["samkit"]
            if args.memory:
                for c in contenders:
                    row[f"{c.name}_peak_mb"] = peak_memory_mb(c.name, args, kind, bf16)
            rows.append(row)
            print(
                f"{kind:5s} {prec:4s}  reference {t['reference']:.3f} s/step  samkit {t['samkit']:.3f} s/step"
                f"  x{row['speedup']:.2f}"
                + (
                    f"  peak MB ref {row['reference_peak_mb']:.0f} samkit {row['samkit_peak_mb']:.0f}"
                    if args.memory
                    else ""
                ),
                flush=True,
            )
    print(
        "JSON "
        + json.dumps(
            {
                "variant": args.variant,
                "size": args.size,
                "frames": args.frames,
                "device": args.device,
                "threads": torch.get_num_threads(),
                "rows": rows,
            }
        )
    )


if __name__ == "__main__":
    main()
