"""COCO RLE: byte-identical to pycocotools, round trips, areas and boxes."""

from __future__ import annotations

import numpy as np
import pycocotools.mask as coco
import pytest

from samkit import rle


def masks():
    rng = np.random.default_rng(0)
    out = [
        np.zeros((5, 7), bool),
        np.ones((5, 7), bool),
        np.eye(6, dtype=bool),
        np.zeros((1, 1), bool),
        np.ones((1, 1), bool),
    ]
    for _ in range(60):
        h, w = rng.integers(1, 80, 2)
        out.append(rng.random((h, w)) < rng.random())
    big = np.zeros((300, 400), bool)
    big[50:250, 100:380] = True  # long runs: multi-group counts and negative deltas
    big[120:130, :] = False
    out.append(big)
    return out


@pytest.mark.parametrize("i", range(66))
def test_encode_matches_pycocotools(i):
    m = masks()[i]
    ref = coco.encode(np.asfortranarray(m.astype(np.uint8)))
    ours = rle.encode(m)
    assert ours["counts"] == ref["counts"].decode("ascii")
    assert ours["size"] == list(ref["size"])
    np.testing.assert_array_equal(rle.decode(ours), m)
    np.testing.assert_array_equal(coco.decode({"size": ours["size"], "counts": ours["counts"].encode()}), m)
    assert rle.area(ours) == int(coco.area(ref)) == int(m.sum())
    assert rle.to_bbox(ours) == [float(v) for v in coco.toBbox(ref)]
    unc = rle.encode_uncompressed(m)
    assert sum(unc["counts"]) == m.size and rle.counts_to_string(unc["counts"]) == ours["counts"]
    assert rle.string_to_counts(ours["counts"]) == unc["counts"]


@pytest.mark.parametrize(
    "counts",
    [
        [],
        [0],
        [5],
        [0, 7, 3],
        [2**31 - 1, 1, 0, 2**31 - 2],  # seven 5-bit groups, and a large negative delta
        [15, 16, 17, 1, 31, 32, 0, 33, 1023, 1024, 1, 1025],  # group and sign-bit boundaries
    ],
)
def test_counts_to_string_matches_pycocotools_at_the_edges(counts):
    size = [1, int(sum(counts))]
    ref = coco.frPyObjects({"size": size, "counts": counts}, *size)["counts"].decode("ascii")
    assert rle.counts_to_string(counts) == ref
    assert rle.counts_to_string(np.asarray(counts, dtype=np.int64)) == ref
    assert rle.string_to_counts(ref) == list(counts)


def test_decode_rejects_inconsistent_counts():
    with pytest.raises(ValueError, match="sum to"):
        rle.decode({"size": [2, 2], "counts": [1, 1]})


def test_string_to_counts_reads_pycocotools_strings_of_many_runs():
    # long strings mix counts of 1 to 7 groups, positive and negative deltas, in both chains
    rng = np.random.default_rng(1)
    counts = np.concatenate([rng.integers(0, 40, 3000), rng.integers(0, 2**20, 300), [2**31 - 1, 0, 5]])
    counts[1:] = np.maximum(counts[1:], 1)  # pycocotools writes no empty runs after the first
    size = [1, int(counts.sum())]
    ref = coco.frPyObjects({"size": size, "counts": counts.tolist()}, *size)["counts"]
    assert rle.string_to_counts(ref) == counts.tolist()
    assert rle.string_to_counts(ref.decode("ascii")) == counts.tolist()


@pytest.mark.parametrize("bad", ["0P", "a0 ", "/", "o" * 13 + "0"])
def test_string_to_counts_rejects_strings_pycocotools_cannot_write(bad):
    # a count cut short (its last byte says more follow), characters outside '0'..'o', over 64 bits
    with pytest.raises(ValueError, match="not a COCO RLE string"):
        rle.string_to_counts(bad)
    with pytest.raises(ValueError, match="not a COCO RLE string"):
        rle.decode({"size": [1, 1], "counts": bad})


@pytest.mark.parametrize("shape", [(1, 40), (40, 1), (2, 2), (0, 5), (5, 0)])
def test_runs_of_thin_and_empty_masks_and_float_input(shape):
    # one row (every change is a seam between columns), one column (no seams), empty masks; float 0/1
    # masks (what predictors return) encode as their boolean form
    m = np.random.default_rng(2).random(shape) < 0.5
    assert rle.encode(m.astype(np.float32)) == rle.encode(m)
    if m.size:
        ref = coco.encode(np.asfortranarray(m.astype(np.uint8)))["counts"].decode("ascii")
        assert rle.encode(m)["counts"] == ref
    else:
        assert rle.encode(m)["counts"] == "" and rle.decode(rle.encode(m)).shape == shape
