"""``samkit eval``: video J&F (``vos``), interactive clicks (``clicks``) and automatic-mask recall
(``auto``), one table per run, side by side."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._common import DEFAULT_MODEL, CLIError, add_generator_args, generator_kwargs


def add_parser(sub) -> argparse.ArgumentParser:
    ev = sub.add_parser(
        "eval",
        help="measure a checkpoint or a setting on your data (video J&F, clicks, automatic masks)",
        description="Evaluate: 'vos' scores predicted video masks against ground truth (J&F, as Meta's "
        "SA-V evaluator); 'clicks' simulates interactive clicks on images (mIoU@k, NoC@85/90, box mIoU); "
        "'auto' measures how many ground-truth objects the automatic masks recall (AR@100/1000).",
    )
    kinds = ev.add_subparsers(dest="kind", metavar="<vos|clicks|auto>")

    v = kinds.add_parser(
        "vos",
        help="J, F and J&F of predicted video masks",
        description="Score predicted masks (samkit track --dataset writes them) against ground truth, "
        "exactly as Meta's sav_evaluator.py: prints its table and writes results.csv into each --pred.",
        epilog="example: samkit eval vos --gt Annotations/ --pred preds/ --json vos.json",
    )
    v.add_argument(
        "--gt", required=True, help="ground truth: video/frame.png (DAVIS) or video/obj/frame.png (SA-V)"
    )
    v.add_argument(
        "--pred",
        required=True,
        action="append",
        help="predictions in the same layout; repeat to compare several side by side",
    )
    v.add_argument("--strict", action="store_true", help="every ground-truth video must have a prediction")
    v.add_argument(
        "--all-frames",
        action="store_true",
        help="score the first and last annotated frames too (not standard)",
    )
    v.add_argument("--processes", type=int, default=None, help="worker processes (default: all cores)")
    v.add_argument("--json", default=None, help="write J&F, J, F and per-object scores (percent) here")
    v.add_argument("--quiet", action="store_true", help="print the global score only, no progress bar")

    c = kinds.add_parser(
        "clicks",
        help="interactive segmentation with simulated clicks",
        description="Simulate clicks on every object (first at its center, then at the largest error, "
        "previous logits fed back): mIoU after 1..N clicks, clicks to reach 85%% and 90%% IoU (NoC), "
        "and the mIoU of a box prompt.",
        epilog="example: samkit eval clicks --data coco:instances_val.json:images/ --max-clicks 20 "
        "--json clicks.json --plot clicks.png --checkpoint a.pt --checkpoint b.pt",
    )
    _data_args(c)
    c.add_argument("--max-clicks", type=int, default=20, help="clicks per object (default 20)")
    c.add_argument("--max-objects", type=int, default=None, help="at most N objects per image (default all)")
    c.add_argument("--plot", default=None, help="PNG of mIoU against clicks, one line per run")
    _run_args(c)

    a = kinds.add_parser(
        "auto",
        help="recall of automatic masks against ground truth",
        description="Generate automatic masks for every image and measure class-agnostic recall "
        "(COCO AR@100, AR@1000, pycocotools) and each object's best IoU, with the time per image.",
        epilog="example: samkit eval auto --data coco:instances_val.json:images/ --json auto.json",
    )
    _data_args(a)
    add_generator_args(a)
    _run_args(a)
    return ev


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        required=True,
        help="coco:ANNOTATIONS.json:IMAGE_DIR or folder:IMAGE_DIR:MASK_DIR (MASK_DIR/<stem>.png id masks)",
    )
    p.add_argument("--max-images", type=int, default=None, help="the first N images only")
    p.add_argument("--json", default=None, help="write the report (every run, its settings and scores) here")


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        action="append",
        default=None,
        help=f"variant (default: {DEFAULT_MODEL}, or the variant of --checkpoint); repeat to compare models",
    )
    p.add_argument(
        "--checkpoint", action="append", default=None, help="official .pt checkpoint; repeat to compare"
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (default: cuda if available)")
    p.add_argument("--fast", action="store_true", help="run the fast path (bfloat16)")
    p.add_argument("--exact", action="store_true", help="run the exact path (the default; with --fast: both)")
    p.add_argument("--verbose", action="store_true", help="print every detail of an error")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _runs(args: argparse.Namespace) -> list[dict[str, Any]]:
    """(model, checkpoint, fast) of every run: each model or each checkpoint, each precision."""
    from ..checkpoints import CheckpointError, checkpoint_variant

    models, ckpts = args.model or [], args.checkpoint or []
    if len(models) > 1 and len(ckpts) > 1:
        raise CLIError("compare several --model or several --checkpoint, not both at once")
    pairs: list[tuple[str, str | None]] = []
    if len(ckpts) > 1 or (ckpts and len(models) <= 1):
        for ck in ckpts:
            name = models[0] if models else None
            if name is None:
                try:
                    name = checkpoint_variant(ck)
                except CheckpointError:
                    name = None
                name = name or DEFAULT_MODEL
            pairs.append((name, ck))
    else:
        pairs = [(m, ckpts[0] if ckpts else None) for m in (models or [DEFAULT_MODEL])]
    speeds = [False, True] if args.fast and args.exact else [bool(args.fast)]
    runs = []
    for name, ck in pairs:
        for fast in speeds:
            label = name + (f" {ck}" if ck and len(pairs) > 1 else "") + (" fast" if fast else "")
            runs.append({"model": name, "checkpoint": ck, "fast": fast, "label": label})
    return runs


def _load(run: dict[str, Any], device: str | None):
    from ..checkpoints import load_model

    if sys.stderr.isatty():
        print(
            f"samkit: loading {run['model']} from {run['checkpoint'] or 'the Hugging Face cache'}...",
            file=sys.stderr,
        )
    return load_model(
        run["model"], checkpoint=run["checkpoint"], device=device, precision="bf16" if run["fast"] else "fp32"
    )


def _check_counts(args: argparse.Namespace) -> None:
    for name in ("max_images", "max_objects", "max_clicks", "processes"):
        v = getattr(args, name, None)
        if v is not None and v < 1:
            raise CLIError(f"--{name.replace('_', '-')} must be >= 1, got {v}")


def run(args: argparse.Namespace) -> int:
    if args.kind is None:
        raise CLIError("say what to evaluate: samkit eval vos|clicks|auto (see samkit eval --help)")
    _check_counts(args)
    try:
        return {"vos": _vos, "clicks": _clicks, "auto": _auto}[args.kind](args)
    except ImportError as e:  # pycocotools: recall, and COCO annotations
        raise CLIError(f"{e}: pip install 'samkit[eval]'") from None


def _vos(args: argparse.Namespace) -> int:
    from ..eval import vos
    from ..eval.report import table, write_json

    results = []
    for pred in args.pred:
        r = vos(
            args.gt,
            pred,
            strict=args.strict,
            all_frames=args.all_frames,
            processes=args.processes,
            progress=not args.quiet,
        )
        results.append(r)
        if not args.quiet:
            print(f"{pred}:")
            print(r.table(), end="")
            print("\nSummary:")
        print(r.summary() + (f" ({pred})" if len(args.pred) > 1 else ""))
        for note in r.notes:
            print(f"note: {note}", file=sys.stderr)
        if not args.quiet:
            print(f"{len(r.objects)} objects, {r.seconds:.2f} s; saved {pred.rstrip('/')}/results.csv")
    if len(results) > 1:
        print()
        print(table(["predictions", "J&F", "J", "F"], [(r.pred_root, r.jf, r.j, r.f) for r in results]))
    if args.json:
        from .. import __version__

        doc: dict[str, Any] = (
            results[0].to_dict() if len(results) == 1 else {"runs": [r.to_dict() for r in results]}
        )
        doc["samkit"] = __version__
        write_json(args.json, doc)
    return 0


def _report(kind: str, args: argparse.Namespace, runs: list[dict], scores: list[dict]) -> dict[str, Any]:
    from ..eval.report import RunInfo

    entries = []
    for run, score in zip(runs, scores):
        settings = {"fast": run["fast"], "device": args.device or "auto"}
        if kind == "clicks":
            settings |= {"max_clicks": args.max_clicks, "max_objects": args.max_objects}
        else:
            settings |= generator_kwargs(args)
        info = RunInfo(run["model"], run["checkpoint"], settings, run["label"]).describe()
        entries.append(info | {"scores": score})
    return {"evaluation": kind, "data": args.data, "max_images": args.max_images, "runs": entries}


def _clicks(args: argparse.Namespace) -> int:
    from ..eval import clicks
    from ..eval.data import ImageSet
    from ..eval.plot import line_chart
    from ..eval.report import table, write_json

    runs = _runs(args)
    images = ImageSet(args.data, max_objects=args.max_objects, max_images=args.max_images)
    results = []
    for run in runs:
        model = _load(run, args.device)
        results.append(clicks(model, images, max_clicks=args.max_clicks, progress=not args.quiet))
        del model
    n = args.max_clicks
    ks = [k for k in (1, 2, 3, 5, 10, 20) if k <= n]
    if n not in ks:
        ks.append(n)
    rows = [
        [run["label"]] + [r.miou[k - 1] * 100 for k in ks] + [r.noc[0.85], r.noc[0.9], r.box_miou * 100]
        for run, r in zip(runs, results)
    ]
    r0 = results[0]
    print(f"{r0.objects} objects in {r0.images} images, up to {n} clicks (mIoU in %)")
    print(table(["run"] + [f"mIoU@{k}" for k in ks] + ["NoC@85", "NoC@90", "box mIoU"], rows))
    if args.plot:
        line_chart(
            {run["label"]: r.miou for run, r in zip(runs, results)},
            args.plot,
            title=f"mIoU against clicks ({r0.objects} objects, {r0.images} images)",
        )
        print(f"wrote {args.plot}")
    if args.json:
        write_json(args.json, _report("clicks", args, runs, [r.to_dict() for r in results]))
        print(f"wrote {args.json}")
    return 0


def _auto(args: argparse.Namespace) -> int:
    from ..eval import auto
    from ..eval.data import ImageSet
    from ..eval.report import table, write_json

    runs = _runs(args)
    images = ImageSet(args.data, max_images=args.max_images)
    results = []
    for run in runs:
        model = _load(run, args.device)
        results.append(
            auto(model, images, progress=not args.quiet, fast=run["fast"], **generator_kwargs(args))
        )
        del model
    r0 = results[0]
    print(f"{r0.objects} objects in {r0.images} images (recall and IoU in %)")
    print(
        table(
            ["run", "AR@100", "AR@1000", "mean best IoU", "masks/img", "s/img"],
            [
                (
                    run["label"],
                    r.recall["AR@100"] * 100,
                    r.recall["AR@1000"] * 100,
                    r.mean_best_iou * 100,
                    r.masks_per_image,
                    r.seconds_per_image,
                )
                for run, r in zip(runs, results)
            ],
        )
    )
    if args.json:
        write_json(args.json, _report("auto", args, runs, [r.to_dict() for r in results]))
        print(f"wrote {args.json}")
    return 0
