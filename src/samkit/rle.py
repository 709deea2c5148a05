"""COCO run-length encoding, byte-compatible with pycocotools, in numpy (no compiled extension).

A mask is flattened in column-major (Fortran) order; ``counts`` alternate between runs of 0s and 1s,
starting with 0s. The compressed form is the string pycocotools writes (``maskApi.c``'s
``rleToString``): each count, delta-coded against the count two before it from the fourth on, in
little-endian 5-bit groups with a continuation bit, offset by 48.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "area",
    "counts_to_string",
    "decode",
    "encode",
    "encode_uncompressed",
    "object_records",
    "string_to_counts",
    "bbox",
    "to_bbox",
]


def _runs(mask: np.ndarray) -> np.ndarray:
    """Run lengths of a (H, W) mask in column-major order, starting with a (possibly empty) 0-run.

    The changes are found on the row-major array as it is (a change down a column is one between
    vertically adjacent elements), and only their positions are put in column-major order, rather
    than transposing a copy of the whole mask (a server click encodes three masks, an automatic-mask
    image dozens)."""
    m = np.asarray(mask)
    b = m if m.dtype == bool else m.astype(bool)
    h, w = b.shape
    if b.size == 0:
        return np.zeros(0, dtype=np.int64)
    # flat index i * w + j of the row differences: column j changes between rows i and i + 1
    rows, cols = np.divmod(np.flatnonzero(b[1:] != b[:-1]), w)
    # bottom of column j against the top of column j + 1
    seams = np.flatnonzero(b[0, 1:] != b[-1, :-1]) + 1
    # column-major index of the first element of each new run
    starts = np.concatenate((cols * h + rows + 1, seams * h))
    starts.sort()
    runs = np.diff(np.concatenate(([0], starts, [b.size])))
    if b[0, 0]:
        runs = np.concatenate(([0], runs))
    return runs.astype(np.int64)


def encode_uncompressed(mask: np.ndarray) -> dict:
    """(H, W) mask -> ``{"size": [H, W], "counts": [int, ...]}`` (COCO uncompressed RLE)."""
    h, w = np.shape(mask)
    return {"size": [int(h), int(w)], "counts": _runs(mask).tolist()}


def counts_to_string(counts) -> str:
    """Compress run lengths into the pycocotools string form.

    Vectorized over the counts, one pass per 5-bit group (at most 7 for counts below 2**31): a
    Python loop over the runs was most of a server click for a noisy mask."""
    cnts = np.asarray(counts, dtype=np.int64).ravel()
    if cnts.size == 0:
        return ""
    x = cnts.copy()
    x[3:] -= cnts[1:-2]  # from the fourth count on, the delta to the count two before
    groups, alive = [], []
    active = np.ones(x.size, dtype=bool)
    while active.any():
        ch = x & 0x1F
        x = x >> 5  # arithmetic shift, as in C for negative deltas
        more = np.where(ch & 0x10, x != -1, x != 0)
        groups.append(np.where(more, ch | 0x20, ch) + 48)
        alive.append(active)
        active = active & more
    # each count's groups are a prefix of its row: row-major selection keeps the byte order
    return np.stack(groups, 1)[np.stack(alive, 1)].astype(np.uint8).tobytes().decode("ascii")


def string_to_counts(s: str | bytes) -> list[int]:
    """Inverse of :func:`counts_to_string`.

    Vectorized like it (a Python loop over the bytes is slow for noisy masks of many runs, and
    :func:`area` and :func:`decode` pay it on every call). Raises ValueError for a string
    pycocotools could not have written (a character outside '0'..'o', or a last count cut short)."""
    return _string_counts(s).tolist()


def _string_counts(s: str | bytes) -> np.ndarray:
    """:func:`string_to_counts` as an int64 array (what :func:`decode` and :func:`area` compute on)."""
    data = np.frombuffer(s.encode("ascii") if isinstance(s, str) else bytes(s), dtype=np.uint8)
    if data.size == 0:
        return np.zeros(0, dtype=np.int64)
    c = data.astype(np.int64) - 48
    if c.min() < 0 or c.max() > 0x3F:
        raise ValueError("not a COCO RLE string: characters must lie between '0' and 'o'")
    more = (c & 0x20) != 0
    if more[-1]:
        raise ValueError("not a COCO RLE string: it ends inside a count")
    last = np.flatnonzero(~more)  # the final byte of each count
    first = np.concatenate(([0], last[:-1] + 1))
    if (last - first).max() >= 12:
        raise ValueError("not a COCO RLE string: a count longer than 64 bits")
    # k-th byte of a count carries bits 5k..5k+4
    k = np.arange(c.size) - np.repeat(first, last - first + 1)
    x = np.add.reduceat((c & 0x1F) << (5 * k), first)
    # a set 0x10 bit in a count's last group is its sign: extend it
    negative = (c[last] & 0x10) != 0
    x[negative] -= np.left_shift(1, 5 * (k[last[negative]] + 1))
    # from the fourth count on, each was stored as the delta to the count two before it: undo by
    # cumulative sums along the odd and the even counts (the first three stand alone)
    x[3::2] = np.cumsum(x[1::2])[1:]
    x[4::2] = np.cumsum(x[2::2])[1:]
    return x


def encode(mask: np.ndarray) -> dict:
    """(H, W) mask -> ``{"size": [H, W], "counts": "..."}``, the string pycocotools' encode gives."""
    h, w = np.shape(mask)
    return {"size": [int(h), int(w)], "counts": counts_to_string(_runs(mask))}


def _counts(rle: dict) -> np.ndarray:
    """The run lengths of a compressed or uncompressed RLE, as an int64 array."""
    c = rle["counts"]
    return _string_counts(c) if isinstance(c, (str, bytes)) else np.asarray(c, dtype=np.int64).ravel()


def object_records(obj_ids, masks) -> list[dict]:
    """Objects' binary masks as the video and stream outputs write them:
    ``[{"obj_id", "area", "rle"}]``, one per id (``masks``: HxW bool arrays, same order)."""
    return [{"obj_id": o, "area": int(m.sum()), "rle": encode(m)} for o, m in zip(obj_ids, masks)]


def decode(rle: dict) -> np.ndarray:
    """RLE (compressed or not) -> (H, W) bool mask."""
    h, w = rle["size"]
    counts = _counts(rle)
    if counts.sum() != h * w:
        raise ValueError(f"RLE counts sum to {int(counts.sum())}, expected {h * w} for size {h}x{w}")
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    return np.repeat(values, counts).reshape((w, h)).T


def area(rle: dict) -> int:
    return int(_counts(rle)[1::2].sum())


def bbox(mask: np.ndarray) -> list[int]:
    """COCO bbox [x, y, width, height] of a 2-D mask (nonzero = inside; [0, 0, 0, 0] when empty)."""
    ys = np.flatnonzero(mask.any(axis=1))
    if len(ys) == 0:
        return [0, 0, 0, 0]
    xs = np.flatnonzero(mask.any(axis=0))
    return [int(xs[0]), int(ys[0]), int(xs[-1] - xs[0] + 1), int(ys[-1] - ys[0] + 1)]


def to_bbox(rle: dict) -> list[float]:
    """COCO bbox [x, y, width, height] of an RLE mask ([0, 0, 0, 0] when empty)."""
    return [float(v) for v in bbox(decode(rle))]
