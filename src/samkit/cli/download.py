"""``samkit download``: official weights into the Hugging Face cache."""

from __future__ import annotations

import argparse

from ._common import DEFAULT_MODEL, add_model_args


def add_parser(sub) -> argparse.ArgumentParser:
    dl = sub.add_parser(
        "download",
        help="download official weights into the Hugging Face cache",
        description="Fetch the official checkpoint of a variant (once) and print its path.",
    )
    dl.add_argument("name", nargs="?", default=None, help="variant to fetch (default: --model)")
    dl.add_argument("--force", action="store_true", help="download again even if cached")
    add_model_args(dl, fast=False)
    return dl


def run(args: argparse.Namespace) -> int:
    import sys

    from ..checkpoints import cached_checkpoint, download_checkpoint

    name = args.name or args.model or DEFAULT_MODEL
    if sys.stderr.isatty() and (args.force or cached_checkpoint(name) is None):
        # huggingface_hub draws the progress bar; say first what is coming
        print(f"samkit: downloading {name} from the Hugging Face Hub...", file=sys.stderr, flush=True)
    path = download_checkpoint(name, force=args.force)
    print(path)
    return 0
