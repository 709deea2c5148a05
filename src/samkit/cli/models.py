"""``samkit models``: the model variants, what is cached, and the execution policy."""

from __future__ import annotations

import argparse
import json

from ._common import add_model_args, precision_of


def add_parser(sub) -> argparse.ArgumentParser:
    models = sub.add_parser(
        "models",
        help="list the model variants and which are downloaded",
        description="List the official variants, their parameters and whether weights are cached.",
    )
    models.add_argument("--json", action="store_true", help="print JSON instead of a table")
    models.add_argument(
        "--policy",
        action="store_true",
        help="print instead the execution policy this machine would use for --device and --fast "
        "(samkit.policy: precision, decoders, kernels, batching; no model is loaded)",
    )
    add_model_args(models)
    return models


def run(args: argparse.Namespace) -> int:
    import torch

    if args.policy:
        from ..checkpoints import resolve_device
        from ..policy import decide

        policy = decide(resolve_device(args.device), precision_of(args))
        print(json.dumps(policy.as_dict(), indent=2) if args.json else policy.describe())
        return 0

    from ..checkpoints import cached_checkpoint
    from ..configs import VARIANTS, variant_names
    from ..modeling import SAM2Model

    rows = []
    for name in variant_names():
        cfg = VARIANTS[name]
        with torch.device("meta"):
            n = sum(p.numel() for p in SAM2Model(cfg).parameters())
        cached = cached_checkpoint(name)
        rows.append(
            {
                "name": name,
                "hf_repo": cfg.hf_repo,
                "checkpoint": cfg.checkpoint_filename,
                "params_m": round(n / 1e6, 1),
                "cached": str(cached) if cached else None,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'model':<24}{'params':>9}  {'hugging face repo':<32}cached")
    for r in rows:
        print(f"{r['name']:<24}{r['params_m']:>8}M  {r['hf_repo']:<32}{r['cached'] or 'no'}")
    return 0
