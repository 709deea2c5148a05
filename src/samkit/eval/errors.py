"""The error type of ``samkit.eval``."""

from __future__ import annotations


class EvalError(ValueError):
    """Input that cannot be evaluated (a missing folder or file, masks of different sizes, an
    unreadable PNG, an empty dataset, ...). The message names the file or folder."""
