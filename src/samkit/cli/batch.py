"""``samkit batch``: many images, resumable, on this machine or a Ray cluster."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._common import (
    CLIError,
    add_generator_args,
    add_model_args,
    add_text_args,
    check_text_args,
    generator_kwargs,
    load,
    model_name,
    precision_of,
    reject_text_args_without_text,
)


def add_parser(sub) -> argparse.ArgumentParser:
    ba = sub.add_parser(
        "batch",
        help="segment many images (a folder, list, glob or bucket), resumable",
        description="Segment every image of the inputs from a prompt file (--prompts) or automatically "
        "(--auto). Writes OUT/results/<image>.json (COCO RLE masks) and OUT/manifest.jsonl (one line per "
        "image: status, masks, seconds, error). Interrupt it and run the same command again: it goes on "
        "where it stopped. --engine ray runs the same job on a Ray cluster. Exit status: 0 all done, "
        "3 some images failed (listed in the manifest), 130 interrupted.",
        epilog="examples: samkit batch photos/ --out results/ --prompts prompts.jsonl\n"
        "          samkit batch 'photos/**/*.jpg' --out results/ --auto --coco results/coco.json\n"
        "          samkit batch s3://bucket/photos/ --out results/ --auto --engine ray --address auto",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ba.add_argument(
        "inputs", nargs="+", help="folder(s) (searched recursively), glob(s), list file(s) or fsspec URL(s)"
    )
    ba.add_argument("--out", required=True, help="output folder")
    mode = ba.add_mutually_exclusive_group(required=True)
    mode.add_argument(
        "--prompts",
        default=None,
        help='JSON lines: {"image": "rel/path.jpg", "points": [[x, y]], "labels": [1], "box": [x0, y0, x1, y1]}',
    )
    mode.add_argument("--auto", action="store_true", help="automatic masks for everything in each image")
    mode.add_argument(
        "--head", default=None, help="a prompt-free head (samkit train-head): its classes, no prompt"
    )
    mode.add_argument(
        "--text",
        default=None,
        help="segment what these words name in every image, e.g. 'tree' (samkit[text])",
    )
    add_text_args(ba)
    ba.add_argument("--instances", action="store_true", help="--head: one object per connected component")
    ba.add_argument("--coco", default=None, help="also write one COCO dataset file of all results")
    ba.add_argument("--png", action="store_true", help="also write each mask as a PNG (OUT/masks/)")
    ba.add_argument("--overlay", action="store_true", help="also write overlays (OUT/overlays/)")
    ba.add_argument("--overwrite", action="store_true", help="discard an earlier job's results in OUT")
    ba.add_argument(
        "--batch-size", type=int, default=0, help="images encoded together (default: 1 on CPU, 64 on GPU)"
    )
    ba.add_argument(
        "--processes",
        type=int,
        default=None,
        help="local engine: worker processes, each with a model (default: 2 on a multi-core CPU, 1 on GPU)",
    )
    ba.add_argument("--workers", type=int, default=2, help="reader threads per process (default 2)")
    ba.add_argument(
        "--engine", choices=["local", "ray"], default="local", help="where to run (default local)"
    )
    ba.add_argument("--address", default=None, help="Ray cluster address (e.g. auto); default: a local Ray")
    ba.add_argument("--num-cpus", type=float, default=1.0, help="CPUs per Ray model actor (default 1)")
    ba.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per Ray model actor (default 0)")
    ba.add_argument("--concurrency", type=int, default=1, help="Ray model actors (default 1)")
    ba.add_argument("--ray-batch-size", type=int, default=4, help="images per Ray actor call (default 4)")
    ba.add_argument("--ext", action="append", default=None, help="image extension to look for (repeatable)")
    ba.add_argument("--quiet", action="store_true", help="no progress bar")
    add_generator_args(ba, note="--auto: ")
    add_model_args(ba)
    return ba


def run(args: argparse.Namespace) -> int:
    from ..batch import BatchInterrupted, BatchSettings, RayOptions, run_batch

    if args.batch_size < 0:
        raise CLIError("--batch-size must be >= 0")
    if args.workers < 1:
        raise CLIError("--workers must be >= 1")
    if args.processes is not None and args.processes < 1:
        raise CLIError("--processes must be >= 1")
    auto = generator_kwargs(args) if args.auto else {}
    if args.text is not None:
        check_text_args(args)
    elif args.prompts is None:  # a prompt file's text lines use the detector options too
        reject_text_args_without_text(args)
    if args.instances and not args.head:
        raise CLIError("--instances goes with --head")
    if args.head:
        from ..heads import HeadError, PromptFreeHead

        try:
            head_info = PromptFreeHead.read_info(args.head)  # the head itself loads in each worker
        except HeadError as e:
            raise CLIError(str(e)) from None
        if args.model is None:
            args.model = head_info["variant"]
    settings = BatchSettings(
        model=model_name(args),
        checkpoint=args.checkpoint,
        device=args.device,
        precision=precision_of(args),
        mode="auto" if args.auto else "head" if args.head else "text" if args.text is not None else "prompts",
        text=args.text,
        detector=args.detector,
        box_threshold=args.box_threshold,
        text_threshold=args.text_threshold,
        nms=args.nms,
        head=args.head,
        instances=args.instances,
        auto=auto,
        batch_size=args.batch_size,
        png=args.png,
        overlay=args.overlay,
    )
    model, processes = None, args.processes
    if args.engine == "local":
        from ..batch.local import default_processes

        # load here, so a bad --model/--checkpoint fails with one line before any work starts
        model = load(args)
        if args.head:
            from ..heads.model import check_fits

            try:
                check_fits(head_info, model)
            except HeadError as e:
                raise CLIError(str(e)) from None
        if args.text is not None:  # the detector loads (or fails) before any image is read
            from ..text import Detector, TextError

            try:
                Detector.load(args.detector)
            except TextError as e:
                raise CLIError(str(e)) from None
        if args.auto:
            from ..predictors import AutomaticMaskGenerator

            AutomaticMaskGenerator(model, **auto)  # validates the arguments before any image is read
        # with several worker processes run_batch leaves this model unused: each worker loads its own
        processes = processes or default_processes(args.device)
    exts = tuple(e if e.startswith(".") else f".{e}" for e in args.ext) if args.ext else None
    try:
        summary = run_batch(
            args.inputs,
            args.out,
            settings,
            prompts=args.prompts,
            engine=args.engine,
            workers=args.workers,
            processes=processes,
            ray=RayOptions(
                address=args.address,
                num_cpus=args.num_cpus,
                num_gpus=args.num_gpus,
                concurrency=args.concurrency,
                batch_size=args.ray_batch_size,
            ),
            coco=args.coco,
            overwrite=args.overwrite,
            progress=not args.quiet,
            model=model,
            **({"extensions": exts} if exts else {}),
        )
    except BatchInterrupted as e:
        s = e.summary
        print(
            f"samkit batch: interrupted; {s.ok + s.failed} of {s.todo} images written to {args.out}. "
            "Run the same command again to continue.",
            file=sys.stderr,
        )
        return 130
    rate = f", {summary.images_per_second:.2f} images/s" if summary.ok else ""
    print(
        f"{summary.ok} ok, {summary.failed} failed, {summary.skipped} already done of {summary.images} images; "
        f"{summary.masks} masks in {summary.seconds:.1f} s{rate}; manifest: {Path(args.out) / 'manifest.jsonl'}"
        + (f"; COCO file {args.coco} ({summary.coco['annotations']} annotations)" if summary.coco else "")
    )
    if summary.failed:
        print(
            f"samkit batch: {summary.failed} image(s) failed; their reasons are in the manifest "
            "(status 'failed'); a rerun retries them",
            file=sys.stderr,
        )
        return 3
    return 0
