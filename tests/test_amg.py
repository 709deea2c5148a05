"""Automatic-mask building blocks against straightforward implementations, and the generator on the
tiny config: output format, chunking, errors, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import samkit
from samkit import amg
from samkit.predictors import automatic


def naive_nms(boxes, scores, thr):
    order = sorted(range(len(boxes)), key=lambda i: -scores[i])
    keep = []
    for i in order:
        ok = True
        for j in keep:
            b, c = boxes[i], boxes[j]
            iw = max(0.0, min(b[2], c[2]) - max(b[0], c[0]))
            ih = max(0.0, min(b[3], c[3]) - max(b[1], c[1]))
            inter = iw * ih
            union = (b[2] - b[0]) * (b[3] - b[1]) + (c[2] - c[0]) * (c[3] - c[1]) - inter
            if union > 0 and inter / union > thr:
                ok = False
                break
        if ok:
            keep.append(i)
    return keep


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("thr", [0.0, 0.3, 0.7, 1.0])
def test_nms_matches_naive(seed, thr):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 50, (40, 2))
    wh = rng.uniform(1, 30, (40, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
    scores = rng.random(40).astype(np.float32)
    ours = amg.nms(torch.from_numpy(boxes), torch.from_numpy(scores), thr).tolist()
    assert ours == naive_nms(boxes.tolist(), scores.tolist(), thr)


def test_nms_ties_keep_input_order():
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]], dtype=torch.float32)
    assert amg.nms(boxes, torch.ones(3), 0.5).tolist() == [0, 2]


def test_stability_and_boxes_match_naive():
    rng = np.random.default_rng(0)
    logits = torch.from_numpy(rng.normal(0, 2, (6, 30, 40)).astype(np.float32))
    logits[3] = -5  # empty
    stab = amg.stability_score(logits, 0.0, 1.0)
    for i in range(6):
        hi, lo = (logits[i] > 1).sum().item(), (logits[i] > -1).sum().item()
        assert (np.isnan(stab[i].item()) and lo == 0) or stab[i].item() == pytest.approx(hi / lo)
    masks = logits > 0
    boxes = amg.batched_mask_to_box(masks)
    for i, m in enumerate(masks.numpy()):
        if not m.any():
            assert boxes[i].tolist() == [0, 0, 0, 0]
            continue
        ys, xs = np.nonzero(m)
        assert boxes[i].tolist() == [xs.min(), ys.min(), xs.max(), ys.max()]


def test_scoring_by_cells_does_not_change_results(tiny_model, image, monkeypatch):
    """The generator scores by cells on big crops; forced on the (noise-like) masks of the tiny model,
    it gives what upsampling gives."""
    from PIL import Image

    big = np.asarray(Image.fromarray(image).resize((420, 270)))
    kw = dict(
        points_per_side=4,
        stability_score_thresh=0.0,
        pred_iou_thresh=0.0,
        box_nms_thresh=1.0,
        output_mode="coco_rle",
    )
    monkeypatch.setattr(automatic, "CELL_MIN_SCALE", float("inf"))
    direct = samkit.AutomaticMaskGenerator(tiny_model, **kw).generate(big)
    monkeypatch.setattr(automatic, "CELL_MIN_SCALE", 1)
    monkeypatch.setattr(automatic, "CELL_MAX_BOUNDARY", float("inf"))
    used = []
    real = amg.upsampled_stability_and_boxes
    monkeypatch.setattr(amg, "upsampled_stability_and_boxes", lambda *a, **k: used.append(1) or real(*a, **k))
    by_cells = samkit.AutomaticMaskGenerator(tiny_model, **kw).generate(big)
    assert used and len(direct) == 48
    assert [a["stability_score"] for a in by_cells] == pytest.approx(
        [a["stability_score"] for a in direct], abs=1e-6, nan_ok=True
    )
    assert [a["bbox"] for a in by_cells] == [a["bbox"] for a in direct]
    assert [a["segmentation"] for a in by_cells] == [a["segmentation"] for a in direct]


def test_point_grid_and_crops():
    g = amg.build_point_grid(4)
    assert g.shape == (16, 2) and g.min() == 0.125 and g.max() == 0.875
    assert [len(x) for x in amg.build_all_layer_point_grids(16, 2, 2)] == [256, 64, 16]
    boxes, layers = amg.generate_crop_boxes((600, 800), 1, 512 / 1500)
    assert boxes[0] == [0, 0, 800, 600] and layers == [0, 1, 1, 1, 1]
    for b in boxes[1:]:
        assert 0 <= b[0] < b[2] <= 800 and 0 <= b[1] < b[3] <= 600


@pytest.fixture()
def image():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 60, (90, 140, 3), dtype=np.uint8)
    img[20:60, 30:80] = (220, 30, 30)
    return img


OPEN = dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0)


def test_output_format(tiny_model, image):
    anns = samkit.AutomaticMaskGenerator(tiny_model, **OPEN).generate(image)
    assert len(anns) == 48  # 16 points x 3 masks, nothing filtered
    for a in anns:
        assert set(a) == {
            "segmentation",
            "area",
            "bbox",
            "predicted_iou",
            "point_coords",
            "stability_score",
            "crop_box",
        }
        assert a["segmentation"].shape == (90, 140) and a["segmentation"].dtype == bool
        assert a["area"] == int(a["segmentation"].sum())
        assert a["crop_box"] == [0.0, 0.0, 140.0, 90.0]
    ious = [a["predicted_iou"] for a in anns]
    assert ious == sorted(ious, reverse=True)  # NMS order


@pytest.mark.parametrize("mode", ["uncompressed_rle", "coco_rle"])
def test_rle_output_modes_match_binary(tiny_model, image, mode):
    from samkit import rle

    binary = samkit.AutomaticMaskGenerator(tiny_model, **OPEN).generate(image)
    encoded = samkit.AutomaticMaskGenerator(tiny_model, output_mode=mode, **OPEN).generate(image)
    for b, e in zip(binary, encoded):
        np.testing.assert_array_equal(rle.decode(e["segmentation"]), b["segmentation"])
        assert isinstance(e["segmentation"]["counts"], str if mode == "coco_rle" else list)
        assert e["area"] == b["area"]


def test_chunking_and_crops_do_not_change_results(tiny_model, image, monkeypatch):
    kw = dict(OPEN, crop_n_layers=1, output_mode="coco_rle")
    whole = samkit.AutomaticMaskGenerator(tiny_model, **kw).generate(image)
    monkeypatch.setattr(automatic, "CHUNK_BYTES", 1)  # one mask at a time
    chunked = samkit.AutomaticMaskGenerator(tiny_model, **kw).generate(image)
    assert whole == chunked
    crops = []
    gen = samkit.AutomaticMaskGenerator(tiny_model, **kw)
    real = gen._process_crop
    gen._process_crop = lambda image, box, *a: crops.append(box) or real(image, box, *a)
    gen.generate(image)
    assert len(crops) == 5 and crops[0] == [0, 0, 140, 90]


def test_filters_only_remove(tiny_model, image):
    every = samkit.AutomaticMaskGenerator(tiny_model, stability_score_offset=0.05, **OPEN).generate(image)
    iou_t = float(np.median([a["predicted_iou"] for a in every]))
    stab_t = float(np.median([a["stability_score"] for a in every]))
    kw = dict(OPEN, pred_iou_thresh=iou_t, stability_score_thresh=stab_t, stability_score_offset=0.05)
    some = samkit.AutomaticMaskGenerator(tiny_model, **kw).generate(image)
    assert 0 < len(some) < len(every) / 2
    assert all(a["predicted_iou"] > iou_t and a["stability_score"] >= stab_t for a in some)
    # each survivor is one of the unfiltered masks
    by_point = {(tuple(a["point_coords"][0]), a["predicted_iou"]) for a in every}
    assert all((tuple(a["point_coords"][0]), a["predicted_iou"]) in by_point for a in some)
    nms = samkit.AutomaticMaskGenerator(tiny_model, **dict(kw, box_nms_thresh=0.3)).generate(image)
    assert len(nms) <= len(some)


def mask_bbox(m: np.ndarray) -> list[float]:
    """The reference's XYWH box of a mask: first pixel, last pixel minus first."""
    if not m.any():
        return [0.0, 0.0, 0.0, 0.0]
    ys, xs = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
    return [float(xs[0]), float(ys[0]), float(xs[-1] - xs[0]), float(ys[-1] - ys[0])]


@pytest.mark.parametrize("fast", [False, True])
def test_bbox_is_the_box_of_the_returned_mask(tiny_model, image, fast):
    # the fast mode filters on low-res boxes; what it reports must still be the returned mask's box
    # (scaled-up low-res boxes fell up to a few pixels short of the mask's right and bottom edges)
    anns = samkit.AutomaticMaskGenerator(tiny_model, fast=fast, **OPEN).generate(image)
    assert len(anns) == 48
    # with crops too: their masks and boxes are placed in the whole image
    anns += samkit.AutomaticMaskGenerator(tiny_model, fast=fast, crop_n_layers=1, **OPEN).generate(image)
    for a in anns:
        assert a["bbox"] == mask_bbox(a["segmentation"])


def test_fast_mode_agrees_with_exact(tiny_model, image):
    kw = dict(
        points_per_side=6, pred_iou_thresh=0.0, stability_score_thresh=0.04, stability_score_offset=0.05
    )
    exact = samkit.AutomaticMaskGenerator(tiny_model, **kw).generate(image)
    fast = samkit.AutomaticMaskGenerator(tiny_model, fast=True, **kw).generate(image)
    assert abs(len(fast) - len(exact)) <= max(2, len(exact) // 5)


@pytest.mark.parametrize("bf16", [True, False])
def test_fast_mode_decoder(tiny_checkpoint, image, mock_cpu, bf16):
    """Where bf16 is fast, the fast mode decodes with a bfloat16 copy of the decoder (the model's own
    stays float32); elsewhere with the model's. Either way every candidate is close to the exact one."""
    mock_cpu(avx512_bf16=bf16)
    tiny_model = samkit.load_model("test-tiny", checkpoint=tiny_checkpoint, device="cpu")
    gen = samkit.AutomaticMaskGenerator(tiny_model, fast=True, **OPEN)
    assert (gen._decoder is not tiny_model.sam_mask_decoder) == bf16
    assert gen._decoder.image_dtype == (torch.bfloat16 if bf16 else torch.float32)
    assert tiny_model.sam_mask_decoder.iou_token.weight.dtype == torch.float32
    fast = gen.generate(image)
    exact = samkit.AutomaticMaskGenerator(tiny_model, **OPEN).generate(image)
    assert len(fast) == len(exact) == 48
    # same prompts, masks close: each exact mask has a fast one of the same point that overlaps it well
    by_point = {}
    for b in fast:
        by_point.setdefault(tuple(b["point_coords"][0]), []).append(b)
    ious = []
    for a in exact:
        best = 0.0
        for b in by_point[tuple(a["point_coords"][0])]:
            inter = np.logical_and(a["segmentation"], b["segmentation"]).sum()
            union = np.logical_or(a["segmentation"], b["segmentation"]).sum()
            best = max(best, inter / union if union else 1.0)
        ious.append(best)
    assert np.mean(ious) > (0.9 if bf16 else 0.999)
    scores = sorted(a["predicted_iou"] for a in exact)
    assert sorted(a["predicted_iou"] for a in fast) == pytest.approx(scores, abs=0.02 if bf16 else 1e-6)


@pytest.mark.parametrize("fast", [False, True])
def test_no_candidate_passes(tiny_model, image, fast):
    """Every candidate dropped by the first filter: an empty list, on small and big crops."""
    from PIL import Image

    for img in (image, np.asarray(Image.fromarray(image).resize((560, 360)))):
        gen = samkit.AutomaticMaskGenerator(tiny_model, points_per_side=4, pred_iou_thresh=1.0, fast=fast)
        assert gen.generate(img) == []


def test_large_image_rle_output(tiny_model):
    """A 6000x4000 image in RLE mode: masks are never all dense at once."""
    img = np.zeros((4000, 6000, 3), np.uint8)
    img[1000:3000, 2000:4000] = 200
    anns = samkit.AutomaticMaskGenerator(
        tiny_model, output_mode="coco_rle", **dict(OPEN, points_per_side=2)
    ).generate(img)
    assert len(anns) == 12 and all(a["segmentation"]["size"] == [4000, 6000] for a in anns)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(points_per_side=None), "Exactly one"),
        (dict(point_grids=[np.zeros((4, 2))]), "Exactly one"),
        (dict(points_per_side=0), "positive"),
        (dict(pred_iou_thresh=1.5), r"pred_iou_thresh must be in \[0, 1\]"),
        (dict(stability_score_thresh=-0.1), "stability_score_thresh"),
        (dict(box_nms_thresh=2), "box_nms_thresh"),
        (dict(crop_overlap_ratio=1.0), "crop_overlap_ratio"),
        (dict(crop_n_layers=-1), "crop_n_layers"),
        (dict(points_per_batch=0), "points_per_batch"),
        (dict(output_mode="polygon"), "Unknown output_mode"),
        (dict(points_per_side=None, point_grids=[np.zeros((4, 3))]), r"shape \(N, 2\)"),
        (dict(points_per_side=None, point_grids=[np.full((4, 2), 2.0)]), "normalized"),
        (dict(points_per_side=None, point_grids=[np.zeros((4, 2))], crop_n_layers=1), "list of 2 arrays"),
        (dict(points_per_side=2, crop_n_layers=2, crop_n_points_downscale_factor=2), "no points"),
    ],
)
def test_bad_settings(tiny_model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        samkit.AutomaticMaskGenerator(tiny_model, **kwargs)


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 50, 3), (0, 5, 3)])
def test_tiny_or_empty_images(tiny_model, shape):
    with pytest.raises(ValueError, match="too small|empty"):
        samkit.AutomaticMaskGenerator(tiny_model).generate(np.zeros(shape, np.uint8))


def test_cli_auto_writes_coco_that_pycocotools_reads(tmp_path, tiny_checkpoint, image, capsys):
    from PIL import Image
    from pycocotools.coco import COCO

    from samkit.cli import main

    path = tmp_path / "img.png"
    Image.fromarray(image).save(path)
    out, ov = tmp_path / "ann.json", tmp_path / "ov.png"
    code = main(
        [
            "auto",
            str(path),
            "--out",
            str(out),
            "--overlay",
            str(ov),
            "--points-per-side",
            "4",
            "--pred-iou-thresh",
            "0",
            "--stability-score-thresh",
            "0",
            "--model",
            "test-tiny",
            "--checkpoint",
            str(tiny_checkpoint),
            "--json",
        ]
    )
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["masks"] > 0 and set(summary["stages"]) >= {"encode", "decode", "filter"}
    coco = COCO(str(out))
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[1]))
    assert len(anns) == summary["masks"]
    for a in anns:
        assert coco.annToMask(a).sum() == a["area"]
    assert np.array(Image.open(ov)).shape == (90, 140, 3)


def test_unknown_keyword_raises_with_a_suggestion(tiny_model):
    """A misspelt threshold used to be dropped silently (and the default threshold applied)."""
    with pytest.raises(TypeError) as e:
        samkit.AutomaticMaskGenerator(tiny_model, pred_iou_tresh=0.9)
    assert str(e.value) == (
        "AutomaticMaskGenerator got an unexpected keyword argument 'pred_iou_tresh' "
        "(did you mean 'pred_iou_thresh'?)"
    )
    with pytest.raises(TypeError, match="did you mean 'points_per_side'"):
        samkit.SAM2AutomaticMaskGenerator(tiny_model, point_per_side=8)


def test_progress_bar_counts_encodings_and_point_batches(tiny_model, capsys):
    from samkit import AutomaticMaskGenerator

    img = np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8)
    gen = AutomaticMaskGenerator(tiny_model, points_per_side=4, points_per_batch=6, progress=True)
    quiet = AutomaticMaskGenerator(tiny_model, points_per_side=4, points_per_batch=6)
    assert len(gen.generate(img)) == len(quiet.generate(img))
    err = capsys.readouterr().err
    # 1 encoding + ceil(16 points / 6) = 3 batches, and nothing from the generator without progress
    assert "automatic masks" in err and "4/4" in err and err.count("automatic masks: 100%") == 1
