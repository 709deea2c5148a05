"""``python -m samkit.train ARGS`` = ``samkit train ARGS`` (the form torchrun launches)."""

import sys

from ..cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
