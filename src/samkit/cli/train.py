"""``samkit train``: fine-tune on images (COCO json, image + mask folders) or videos (DAVIS/MOSE
folders, SA-V), one process or many under ``torchrun`` (``python -m samkit.train`` takes the same
arguments)."""

from __future__ import annotations

import argparse
import sys

from ._common import CLIError, add_model_args, model_name


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "train",
        help="fine-tune a model on your images or videos",
        description="Fine-tune SAM 2 with Meta's training recipe (simulated clicks, boxes and masks, "
        "correction clicks, the multi-step loss). Writes OUT/checkpoint.pt (official layout: "
        "load it with --checkpoint), OUT/last.pt (to resume: rerun the same command) and "
        "OUT/metrics.jsonl. Under torchrun: torchrun --nproc-per-node N -m samkit.train ...",
    )
    p.add_argument(
        "--data",
        action="append",
        required=True,
        metavar="SPEC",
        help="coco:ANNOTATIONS.json:IMAGE_DIR, folder:IMAGE_DIR:MASK_DIR, davis:JPEG_DIR:ANN_DIR or "
        "sav:DIR; repeat to mix datasets (each batch comes from one of them)",
    )
    p.add_argument("--out", required=True, help="output folder (rerun with the same folder to resume)")
    p.add_argument("--val", default=None, metavar="SPEC", help="validation data (same forms as --data)")
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.0,
        help="hold out this fraction of the (first) --data for validation after every epoch",
    )
    length = p.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, default=None, help="passes over the data (default 1)")
    length.add_argument("--steps", type=int, default=None, help="optimizer steps (instead of --epochs)")
    p.add_argument(
        "--batch-size",
        type=int,
        action="append",
        default=None,
        help="samples per step and process (default 1); repeat to give each --data its own",
    )
    p.add_argument("--lr", type=float, default=5e-6, help="learning rate (default 5e-6, Meta's)")
    p.add_argument(
        "--encoder-lr", type=float, default=3e-6, help="image encoder learning rate (default 3e-6)"
    )
    p.add_argument(
        "--freeze",
        action="append",
        default=[],
        metavar="PART",
        help="do not train: image_encoder, prompt_encoder, mask_decoder or memory (repeat or comma-separate)",
    )
    p.add_argument("--lora", type=int, default=0, metavar="RANK", help="train LoRA updates of this rank only")
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="bf16 autocast (as Meta trains), fp32, or auto: bf16 where the device has it (default)",
    )
    p.add_argument("--seed", type=int, default=123, help="random seed (default 123)")
    p.add_argument("--size", type=int, default=None, help="training resolution (default: the model's, 1024)")
    p.add_argument("--frames", type=int, default=8, help="frames per video clip (default 8)")
    p.add_argument("--max-objects", type=int, default=3, help="objects per clip or image (default 3)")
    p.add_argument("--no-augment", action="store_true", help="no flips, warps or colour jitter")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable samples (listed at the end)")
    p.add_argument("--activation-checkpointing", action="store_true", help="less memory, ~30%% more time")
    p.add_argument("--save-every", type=int, default=100, help="steps between resumable saves (default 100)")
    p.add_argument("--workers", type=int, default=2, help="data loading processes (default 2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_model_args(p, fast=False)
    return p


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from ..checkpoints import load_model
    from ..configs import get_config

    try:
        import kornia  # noqa: F401
    except ImportError:
        raise CLIError(
            "samkit train needs kornia (and pycocotools for COCO): pip install 'samkit[train]'"
        ) from None
    from ..train import (
        AugmentSettings,
        DataError,
        OptimSettings,
        TrainSettings,
        distributed,
        fit,
        parse_data_spec,
        split,
    )

    rank, _ = distributed()
    name = model_name(args)
    cfg = get_config(name)
    if args.size is not None:
        cfg = dataclasses.replace(cfg, image_size=args.size)
    size = cfg.image_size
    augment = AugmentSettings.none(size) if args.no_augment else AugmentSettings(size=size)
    opts = dict(
        augment=augment,
        seed=args.seed,
        skip_bad=args.skip_bad,
        num_frames=args.frames,
        max_objects=args.max_objects,
    )
    try:
        datasets = [parse_data_spec(spec, **opts) for spec in args.data]
        val = (
            parse_data_spec(args.val, **{**opts, "augment": AugmentSettings.none(size)}) if args.val else None
        )
    except DataError as e:
        raise CLIError(str(e)) from None
    if args.val_fraction:
        if val is not None:
            raise CLIError("give --val or --val-fraction, not both")
        datasets[0], val = split(datasets[0], args.val_fraction, seed=args.seed)
    sizes = args.batch_size or [1]
    if len(sizes) == 1:
        sizes = sizes * len(datasets)
    if len(sizes) != len(datasets):
        raise CLIError(
            f"{len(sizes)} --batch-size values for {len(datasets)} --data: give one, or one per --data"
        )
    freeze = tuple(part.strip() for value in args.freeze for part in value.split(",") if part.strip())
    steps = args.steps
    epochs = None if steps is not None else (args.epochs or 1)
    settings = TrainSettings(
        epochs=epochs,
        steps=steps,
        batch_size=sizes[0],
        optim=OptimSettings(lr=args.lr, encoder_lr=args.encoder_lr),
        precision=args.precision,
        seed=args.seed,
        freeze=freeze,
        lora_rank=args.lora,
        activation_checkpointing=args.activation_checkpointing,
        save_every=args.save_every,
        workers=args.workers,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    if rank == 0 and sys.stderr.isatty():
        source = args.checkpoint or "the Hugging Face cache"
        print(f"samkit: loading {name} from {source}...", file=sys.stderr, flush=True)
    model = load_model(cfg, checkpoint=args.checkpoint, device=args.device)
    try:
        result = fit(model, list(zip(datasets, sizes)), settings, out=args.out, val=val)
    except (DataError, FloatingPointError) as e:
        raise CLIError(str(e)) from None
    except ImportError as e:  # pycocotools, imported when the first COCO mask is decoded
        raise CLIError(f"{e}: pip install 'samkit[train]'") from None
    if rank == 0:
        from pathlib import Path

        log = Path(args.out) / "skipped.txt"  # every process's skips, DataLoader workers' included
        skipped = dict.fromkeys(log.read_text().splitlines()) if log.exists() else {}
        if skipped:
            print(f"skipped {len(skipped)} bad sample(s) (listed in {log}):", file=sys.stderr)
        for m in skipped:
            print(f"  {m}", file=sys.stderr)
        if result.resumed_from >= result.steps:
            print(f"already trained {result.steps} steps: {result.checkpoint}")
            return 0
        note = f" (resumed at step {result.resumed_from})" if result.resumed_from else ""
        last = result.metrics.get("loss")
        loss = f", last loss {last:.4f}" if last is not None else ""
        val_note = ""
        if result.validation:
            v = result.validation[-1]
            val_note = ", " + ", ".join(f"{k} {v[k]:.4f}" for k in v if k.startswith("val_"))
        print(f"trained {result.steps} steps{note}{loss}{val_note}: {result.checkpoint}")
    return 0
