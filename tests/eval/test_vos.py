"""samkit.eval.vos: J, F and J&F against hand-made cases and against a plain reimplementation of the
DAVIS definitions written here (pixel loops for the boundary map, an explicit disk for the dilation)
with the accumulation rules of Meta's SA-V evaluator."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samkit.eval import EvalError, boundary_f, boundary_map, region_similarity, vos

# --- the reference written from the definitions ----------------------------------------------


def ref_boundary(seg: np.ndarray) -> np.ndarray:
    h, w = seg.shape

    def at(y, x):
        return bool(seg[y, x]) if y < h and x < w else False

    out = np.zeros((h, w), dtype=bool)
    for y in range(h):
        for x in range(w):
            s = at(y, x)
            if y == h - 1 and x == w - 1:
                continue
            if y == h - 1:
                out[y, x] = s != at(y, x + 1)
            elif x == w - 1:
                out[y, x] = s != at(y + 1, x)
            else:
                out[y, x] = (s != at(y, x + 1)) or (s != at(y + 1, x)) or (s != at(y + 1, x + 1))
    return out


def ref_dilate(b: np.ndarray, r: int) -> np.ndarray:
    h, w = b.shape
    out = np.zeros_like(b)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            if dy * dy + dx * dx > r * r:
                continue
            shifted = np.zeros_like(b)
            ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
            xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
            shifted[yd, xd] = b[ys, xs]
            out |= shifted
    return out


def ref_scores(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    inter, total = int((pred & gt).sum()), int(pred.sum() + gt.sum())
    j = 1.0 if total == 0 else inter / (total - inter)
    r = math.ceil(0.008 * math.sqrt(pred.shape[0] ** 2 + pred.shape[1] ** 2))
    pb, gb = ref_boundary(pred), ref_boundary(gt)
    n_p, n_g = int(pb.sum()), int(gb.sum())
    if n_p == 0 and n_g == 0:
        p = rc = 1.0
    elif n_p == 0:
        p, rc = 1.0, 0.0
    elif n_g == 0:
        p, rc = 0.0, 1.0
    else:
        p = (pb & ref_dilate(gb, r)).sum() / n_p
        rc = (gb & ref_dilate(pb, r)).sum() / n_g
    f = 0.0 if p + rc == 0 else 2 * p * rc / (p + rc)
    return j, f


def ref_video(frames: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """{object: (J%, F%)}: an object is scored from the first frame it is seen in (ground truth or
    prediction) and reported when it is ever in the ground truth."""
    seen, in_gt = [], set()
    js, fs = defaultdict(list), defaultdict(list)
    for pred, gt in frames:
        for v in sorted(set(np.unique(gt)) | set(np.unique(pred))):
            if v != 0 and v not in seen:
                seen.append(v)
        in_gt |= {v for v in np.unique(gt) if v != 0}
        for obj in seen:
            j, f = ref_scores(pred == obj, gt == obj)
            js[obj].append(j)
            fs[obj].append(f)
    return {int(o): (100 * sum(js[o]) / len(js[o]), 100 * sum(fs[o]) / len(fs[o])) for o in in_gt}


# --- data --------------------------------------------------------------------------------------

PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0] + [0] * (256 * 3 - 12)


def save_labels(path: Path, labels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(labels.astype(np.uint8), mode="P")
    im.putpalette(PALETTE)
    im.save(path)


def blob(h, w, cy, cx, ry, rx) -> np.ndarray:
    y, x = np.mgrid[:h, :w]
    return ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1


def random_video(rng, n=7, h=48, w=64, objects=3):
    """(pred, gt) label frames: drifting ellipses, predictions jittered, some objects late or missed."""
    out = []
    for t in range(n):
        gt = np.zeros((h, w), np.uint8)
        pred = np.zeros((h, w), np.uint8)
        for o in range(1, objects + 1):
            cy, cx = 10 + 6 * o + t, 8 + 14 * o - t
            if not (o == 3 and t < 3):  # object 3 appears late in the ground truth
                gt[blob(h, w, cy, cx, 6 + o, 5 + t % 3)] = o
            if not (o == 2 and t == 4) and rng.random() < 0.9:
                pred[blob(h, w, cy + rng.integers(-2, 3), cx + rng.integers(-2, 3), 6 + o, 6)] = o
        if t == 2:
            pred[rng.random((h, w)) < 0.01] = 3  # specks of object 3 before it appears
        out.append((pred, gt))
    return out


def write_davis(root: Path, videos: dict[str, list[tuple[np.ndarray, np.ndarray]]]) -> tuple[Path, Path]:
    gt, pred = root / "gt", root / "pred"
    for name, frames in videos.items():
        for t, (p, g) in enumerate(frames):
            save_labels(gt / name / f"{t:05d}.png", g)
            save_labels(pred / name / f"{t:05d}.png", p)
    return gt, pred


def write_sav(root: Path, videos: dict[str, list[tuple[np.ndarray, np.ndarray]]]) -> tuple[Path, Path]:
    gt, pred = root / "gt", root / "pred"
    for name, frames in videos.items():
        ids = sorted({int(v) for _, g in frames for v in np.unique(g) if v})
        for o in ids:
            for t, (p, g) in enumerate(frames):
                save_labels(gt / name / f"{o - 1:03d}" / f"{t:05d}.png", g == o)
                save_labels(pred / name / f"{o - 1:03d}" / f"{t:05d}.png", p == o)
    return gt, pred


# --- per-frame measures ------------------------------------------------------------------------


def test_boundary_map_matches_definition():
    rng = np.random.default_rng(0)
    for _ in range(5):
        seg = rng.random((9, 13)) < 0.4
        np.testing.assert_array_equal(boundary_map(seg), ref_boundary(seg))


def test_hand_made_scores():
    h, w = 64, 64  # diagonal 90.5 -> radius ceil(0.72) = 1
    sq = np.zeros((h, w), bool)
    sq[10:20, 10:20] = True
    moved = np.roll(sq, 1, axis=1)
    assert region_similarity(sq, sq) == 1.0 and boundary_f(sq, sq) == 1.0
    assert region_similarity(moved, sq) == pytest.approx(90 / 110)
    assert boundary_f(moved, sq) == 1.0  # every boundary pixel within one pixel of the other's
    far = np.roll(sq, 5, axis=1)
    assert 0 < boundary_f(far, sq) < 1
    empty = np.zeros((h, w), bool)
    assert region_similarity(empty, empty) == 1.0 and boundary_f(empty, empty) == 1.0
    assert region_similarity(empty, sq) == 0.0 and boundary_f(empty, sq) == 0.0  # missed
    assert region_similarity(sq, empty) == 0.0 and boundary_f(sq, empty) == 0.0  # false alarm


def test_boundary_f_matches_explicit_disk_dilation():
    rng = np.random.default_rng(1)
    for h, w in ((40, 60), (130, 150)):  # radius 1 and 2
        for _ in range(4):
            a = blob(h, w, *rng.integers(10, 30, 2), *rng.integers(3, 12, 2))
            b = blob(h, w, *rng.integers(10, 30, 2), *rng.integers(3, 12, 2)) | (rng.random((h, w)) < 0.003)
            assert boundary_f(a, b) == pytest.approx(ref_scores(a, b)[1], abs=1e-12)


# --- folders -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def davis(tmp_path_factory):
    rng = np.random.default_rng(3)
    videos = {name: random_video(rng) for name in ("bear", "cows", "dog-agility")}
    gt, pred = write_davis(tmp_path_factory.mktemp("davis"), videos)
    return gt, pred, videos


def _expected_rows(videos, skip=True):
    rows = []
    for name in sorted(videos):
        frames = videos[name][1:-1] if skip else videos[name]
        for obj, (j, f) in sorted(ref_video(frames).items()):
            rows.append((name, obj, j, f))
    return rows


@pytest.mark.parametrize("all_frames", [False, True])
def test_davis_layout_equals_reference(davis, all_frames):
    gt, pred, videos = davis
    result = vos(gt, pred, all_frames=all_frames, processes=1, write_csv=False)
    want = _expected_rows(videos, skip=not all_frames)
    got = sorted(result.objects, key=lambda r: (r[0], r[1]))
    assert [(v, o) for v, o, *_ in got] == [(v, o) for v, o, *_ in want]
    for (_, _, j, f), (_, _, rj, rf) in zip(got, want):
        assert j == pytest.approx(rj, abs=1e-6) and f == pytest.approx(rf, abs=1e-6)
    assert result.j == pytest.approx(np.mean([r[2] for r in want]), abs=1e-6)
    assert result.f == pytest.approx(np.mean([r[3] for r in want]), abs=1e-6)
    assert result.jf == pytest.approx((result.j + result.f) / 2)
    # object 3 is late and object 2 missed on a frame: the scores are not all perfect
    assert 0 < result.jf < 100


def test_sav_layout_equals_reference_and_pool(tmp_path):
    rng = np.random.default_rng(4)
    videos = {"sav_000001": random_video(rng), "sav_000002": random_video(rng, objects=2)}
    gt, pred = write_sav(tmp_path, videos)
    result = vos(gt, pred, processes=2)
    want = {}
    for name, frames in videos.items():
        for o in sorted({int(v) for _, g in frames for v in np.unique(g) if v}):
            per = ref_video([((p == o).astype(np.uint8), (g == o).astype(np.uint8)) for p, g in frames[1:-1]])
            want[(name, f"{o - 1:03d}")] = per[1]
    assert [(v, o) for v, o, *_ in result.objects] == sorted(want)
    for v, o, j, f in result.objects:
        assert (j, f) == pytest.approx(want[(v, o)], abs=1e-6)
    # results.csv is Meta's table; the json has every object
    csv = (pred / "results.csv").read_text().splitlines()
    assert csv[0] == "sequence    ,obj,  J&F,    J,    F"
    assert csv[1] == f"Global score,   , {result.jf:.1f}, {result.j:.1f}, {result.f:.1f}"
    v, o, j, f = result.objects[0]
    assert csv[2] == f"{v:<12},{o}, {(j + f) / 2:>4.1f}, {j:>4.1f}, {f:>4.1f}"
    assert len(csv) == 2 + len(want)
    d = result.to_dict()
    assert d["videos"]["sav_000002"]["001"]["J"] == pytest.approx(want[("sav_000002", "001")][0])
    json.dumps(d)
    assert vos(gt, pred, processes=1, write_csv=False).objects == result.objects


def test_perfect_prediction_and_the_table(tmp_path):
    frames = [(g, g) for _, g in random_video(np.random.default_rng(5), n=4)]
    gt, pred = write_davis(tmp_path, {"a-long-video-name": frames})
    result = vos(gt, pred, processes=1)
    assert (result.jf, result.j, result.f) == (100.0, 100.0, 100.0)
    text = (pred / "results.csv").read_text()
    assert text.splitlines()[:3] == [
        "sequence         ,obj,  J&F,    J,    F",
        "Global score     ,   , 100.0, 100.0, 100.0",
        "a-long-video-name,001, 100.0, 100.0, 100.0",
    ]
    assert result.table().startswith("sequence          obj   J&F")


def test_object_missing_from_prediction_and_only_predicted(tmp_path):
    h, w = 32, 32
    gt = np.zeros((h, w), np.uint8)
    gt[4:12, 4:12], gt[20:28, 20:28] = 1, 2
    pred = np.zeros((h, w), np.uint8)
    pred[4:12, 4:12] = 1
    pred[0:3, 25:30] = 7  # an object the ground truth does not have
    gtp, predp = write_davis(tmp_path, {"v": [(pred, gt)] * 3})
    result = vos(gtp, predp, processes=1, write_csv=False)
    scores = {o: (j, f) for _, o, j, f in result.objects}
    assert scores == {1: (100.0, 100.0), 2: (0.0, 0.0)}  # 7 is not scored
    assert result.j == 50.0


def test_strict_and_matching(tmp_path):
    frames = random_video(np.random.default_rng(6), n=3)
    gt, pred = write_davis(tmp_path, {"a": frames, "b": frames})
    import shutil

    shutil.rmtree(pred / "b")
    (pred / "c").mkdir()
    assert {v for v, *_ in vos(gt, pred, processes=1, write_csv=False).objects} == {"a"}
    with pytest.raises(
        EvalError, match=r"video\(s\) of .*gt have no prediction.*: b;.*pred are not in .*: c"
    ):
        vos(gt, pred, strict=True, processes=1)
    assert not (pred / "results.csv").exists()  # nothing written on failure
    shutil.rmtree(pred / "a")
    with pytest.raises(EvalError, match="no video of .* has a prediction folder"):
        vos(gt, pred, processes=1)


def test_bad_inputs(tmp_path):
    frames = random_video(np.random.default_rng(7), n=4)
    gt, pred = write_davis(tmp_path, {"v": frames})
    with pytest.raises(EvalError, match="prediction folder not found"):
        vos(gt, tmp_path / "nope")
    (pred / "v" / "00001.png").unlink()
    with pytest.raises(EvalError, match=r"missing prediction .*00001\.png"):
        vos(gt, pred, processes=1)
    save_labels(pred / "v" / "00001.png", np.zeros((10, 10), np.uint8))
    with pytest.raises(EvalError, match=r"size mismatch: .*00001\.png is 10x10, .*00001\.png is 64x48"):
        vos(gt, pred, processes=1)
    (pred / "v" / "00001.png").write_bytes(b"not a png")
    with pytest.raises(EvalError, match=r"cannot read mask .*00001\.png"):
        vos(gt, pred, processes=1)
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(pred / "v" / "00001.png")
    with pytest.raises(EvalError, match="3-channel image"):
        vos(gt, pred, processes=1)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EvalError, match="no video folder in the ground truth"):
        vos(empty, pred)
    assert not (pred / "results.csv").exists()


def test_sav_png_with_two_objects_is_an_error(tmp_path):
    frames = random_video(np.random.default_rng(8), n=3)
    gt, pred = write_sav(tmp_path, {"v": frames})
    save_labels(pred / "v" / "000" / "00001.png", frames[1][1])  # all objects in one PNG
    with pytest.raises(EvalError, match="more than one object.*SA-V layout"):
        vos(gt, pred, processes=1)


def test_dataset_root_with_annotations_folder(tmp_path):
    frames = random_video(np.random.default_rng(9), n=3)
    gt, pred = write_davis(tmp_path, {"v": frames})
    root = tmp_path / "DAVIS"
    (root / "Annotations").mkdir(parents=True)
    gt.rename(root / "Annotations" / "480p")  # DAVIS's layout: Annotations/480p/<video>
    ours = vos(root, pred, processes=1, write_csv=False).objects
    assert ours == vos(root / "Annotations" / "480p", pred, processes=1, write_csv=False).objects


def test_sav_object_folder_names_are_json_keys_as_they_are(tmp_path):
    frames = random_video(np.random.default_rng(10), n=4, objects=2)
    gt, pred = write_sav(tmp_path, {"v": frames})
    for root in (gt, pred):  # objects named 1 and 10, which "{:03}" would both turn into "100"
        (root / "v" / "000").rename(root / "v" / "1")
        (root / "v" / "001").rename(root / "v" / "10")
    assert set(vos(gt, pred, processes=1, write_csv=False).videos()["v"]) == {"1", "10"}
