"""``samkit train-head``: a prompt-free head for a few classes, trained on cached image embeddings."""

from __future__ import annotations

import argparse
import sys

from ._common import CLIError, add_model_args, load


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "train-head",
        help="train a prompt-free head: segment a class with no clicks",
        description="Train a prompt-free head (AutoSAM-style) for the classes you name: the image encoder "
        "runs once per image (embeddings cached on disk) and stays frozen; the head learns per-class "
        "masks. Use it with samkit segment/batch/serve --head. Writes OUT (the best head on validation), "
        "OUT.last.pt (rerun the same command to resume) and OUT.metrics.jsonl.",
        epilog="example: samkit train-head --model sam2.1-hiera-small --data coco:trees.json:photos/ "
        "--classes tree --out tree-head.pt",
    )
    p.add_argument(
        "--data",
        required=True,
        metavar="SPEC",
        help="coco:ANNOTATIONS.json:IMAGE_DIR (categories named by --classes) or folder:IMAGE_DIR:MASK_DIR "
        "(one class: every object)",
    )
    p.add_argument("--classes", required=True, help="comma-separated class names, e.g. tree or disc,rect")
    p.add_argument("--out", required=True, help="the head file to write, e.g. tree-head.pt")
    p.add_argument(
        "--kind",
        choices=("tokens", "dense"),
        default="tokens",
        help="tokens: a decoder with one learned token per class (AutoSAM, default); dense: a small net "
        "making SAM's dense prompt, decoder frozen",
    )
    p.add_argument(
        "--val", default=None, metavar="SPEC", help="validation data (default: hold out --val-fraction)"
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="fraction of --data held out for validation (default 0.1)",
    )
    length = p.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int, default=30, help="passes over the data (default 30)")
    length.add_argument("--steps", type=int, default=None, help="optimizer steps (instead of --epochs)")
    p.add_argument("--batch-size", type=int, default=4, help="images per step (default 4)")
    p.add_argument("--lr", type=float, default=3e-4, help="learning rate (default 3e-4)")
    p.add_argument(
        "--augment",
        default="",
        help="fixed augmentations, each encoded once more per image: hflip, vflip, rot180 (comma-separated)",
    )
    p.add_argument(
        "--precision", choices=("fp32", "bf16"), default="fp32", help="the encoder pass (default fp32)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--cache", default=None, help="embedding cache folder (default ~/.cache/samkit/embeddings)"
    )
    p.add_argument(
        "--max-ram-gib",
        type=float,
        default=4.0,
        help="keep embeddings in memory up to this size, else read them from the cache each batch (default 4)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_model_args(p, fast=False)
    return p


def run(args: argparse.Namespace) -> int:
    from ..eval.report import file_sha256
    from ..heads import HeadError, HeadSettings, train_head

    classes = [c.strip() for c in args.classes.split(",") if c.strip()]
    if not classes:
        raise CLIError("--classes needs at least one class name")
    augment = tuple(a.strip() for a in args.augment.split(",") if a.strip())
    try:
        settings = HeadSettings(
            kind=args.kind,
            epochs=args.epochs if args.epochs is not None else 30,
            steps=args.steps,
            lr=args.lr,
            batch_size=args.batch_size,
            augment=augment,
            val_fraction=args.val_fraction,
            seed=args.seed,
            precision=args.precision,
            max_ram_gib=args.max_ram_gib,
        )
        from ..heads import ClassImages

        data = ClassImages(args.data, classes)  # fail on bad data before loading the model
        val = ClassImages(args.val, classes) if args.val else None
        model = load(args)
        sha = file_sha256(args.checkpoint) if args.checkpoint else None
        result = train_head(
            model,
            data,
            classes,
            args.out,
            settings,
            checkpoint_sha256=sha,
            val_data=val,
            cache_dir=args.cache,
            progress=not args.no_progress,
        )
    except HeadError as e:
        raise CLIError(str(e)) from None
    except ImportError as e:  # pycocotools for COCO data
        raise CLIError(f"{e}: pip install 'samkit[train]'") from None
    last = result.history[-1] if result.history else {}
    best = f"best validation mIoU {result.best_val_miou:.3f}; " if result.best_val_miou is not None else ""
    print(
        f"trained a {settings.kind} head for {', '.join(classes)} on {result.head.variant}: "
        f"{len(result.history)} epochs, last loss {last.get('loss', float('nan')):.4f}; {best}"
        f"encoder ran {result.encoded} times ({result.cache_hits} cached) in {result.embed_seconds:.1f} s, "
        f"training {result.train_seconds:.1f} s; wrote {result.path}",
        file=sys.stdout,
    )
    return 0
