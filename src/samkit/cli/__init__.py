"""The ``samkit`` command line: one entry point, ``samkit <command>``.

Commands: ``segment`` (prompted masks for one image), ``auto`` (everything in an image), ``batch``
(many images, resumable, local or on Ray), ``track`` (objects through a video), ``serve`` (HTTP API),
``bench`` (speed, side by side with the reference), ``models`` (the variants and what is cached),
``download`` (fetch official weights), ``train`` (fine-tune on your data), ``eval`` (measure on your
data: video J&F, simulated clicks, automatic-mask recall), ``train-head`` (a prompt-free head for a
few classes). Every command takes ``--model``, ``--checkpoint`` and
``--device``. Errors print one line to stderr and exit with status 1 (2 for bad arguments).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence

from . import auto, batch, bench, download, eval, export, models, segment, serve, track, train, train_head
from ._common import CLIError, version

__all__ = ["CLIError", "build_parser", "main"]

# one module per command, each with add_parser(subparsers) and run(args)
COMMANDS = {
    "segment": segment,
    "auto": auto,
    "serve": serve,
    "track": track,
    "batch": batch,
    "bench": bench,
    "models": models,
    "download": download,
    "train": train,
    "eval": eval,
    "train-head": train_head,
    "export": export,
}


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (exit status 2), like every other samkit error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# options whose value may start with '-' (a negative coordinate): "--point -5,10" is "--point=-5,10"
_SIGNED_VALUES = ("--point", "--box", "--prompt")
_SIGNED = re.compile(r"^-[\d.]")


def _join_signed_values(argv: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in _SIGNED_VALUES and i + 1 < len(argv) and _SIGNED.match(argv[i + 1]):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
            continue
        out.append(argv[i])
        i += 1
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="samkit",
        description="Segment anything in images and video, fast (SAM 2 / SAM 2.1 in pure PyTorch).",
    )
    parser.add_argument("--version", action="version", version=f"samkit {version()}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for module in COMMANDS.values():
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (tests call this in-process)."""
    parser = build_parser()
    args = parser.parse_args(_join_signed_values(list(sys.argv[1:] if argv is None else argv)))
    if args.command is None:
        parser.print_help()
        return 2
    from ..checkpoints import CheckpointError, DownloadError
    from ..runtime import tune_allocator

    tune_allocator()
    try:
        return COMMANDS[args.command].run(args)
    except (
        CLIError,
        CheckpointError,
        DownloadError,
        ValueError,
        TypeError,
        FileNotFoundError,
        OSError,
        IndexError,
        KeyError,
        RuntimeError,
    ) as e:
        if isinstance(e, DownloadError):
            msg = e.cli_message
        elif isinstance(e, CheckpointError) and not getattr(args, "verbose", False):
            # the summary, with command-line advice (the key lists only with --verbose)
            msg = e.summary
            if e.variant is not None:
                msg = msg.split(": load it with")[0] + f": use --model {e.variant} (or leave --model out)"
        else:
            # one line, whatever the exception carried: multi-line messages are joined
            msg = " ".join(line.strip() for line in str(e).strip().splitlines() if line.strip())
        msg = msg or type(e).__name__
        print(f"samkit {args.command}: error: {msg}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"samkit {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
