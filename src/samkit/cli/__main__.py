"""``python -m samkit.cli``: the same as ``samkit`` / ``python -m samkit``."""

import sys

from . import main

sys.exit(main())
