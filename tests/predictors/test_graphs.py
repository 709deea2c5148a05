"""Recorded clicks (predictors/_graphs.py) without a GPU: CUDA's recording is replaced by one that
re-runs the recorded function on the recorded (static) tensors, so everything around it -- which
shapes are recorded, the image side refilled on a new image, copies handed out, the eviction and
the fallback -- is checked here. tests/gpu/check.py checks real graphs on a GPU."""

from __future__ import annotations

import weakref

import numpy as np
import pytest
import torch

import samkit
from fakegraphs import fake_capture
from samkit.policy import decide
from samkit.predictors import _graphs
from samkit.predictors.image import ImagePredictor


@pytest.fixture()
def graphed(monkeypatch):
    monkeypatch.setattr(_graphs, "_BY_DECODER", weakref.WeakKeyDictionary())
    monkeypatch.setattr(_graphs.DecoderGraphs, "_capture", fake_capture)
    monkeypatch.setattr(ImagePredictor, "_use_cuda_graphs", lambda self: True)


@pytest.fixture()
def images():
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, (90, 140, 3), dtype=np.uint8) for _ in range(2)]


def _eager(model, image, **kw):
    p = samkit.ImagePredictor(model)
    p._use_cuda_graphs = lambda: False
    p.set_image(image)
    return p.predict(**kw)


def _same(a, b):
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_recorded_clicks_equal_eager_ones_across_images(tiny_model, images, graphed):
    clicks = [
        dict(point_coords=[[30.0, 40.0]], point_labels=[1]),
        dict(point_coords=[[100.0, 20.0]], point_labels=[1]),
        dict(point_coords=[[60.0, 70.0]], point_labels=[0]),
    ]
    p = samkit.ImagePredictor(tiny_model)
    graphs = _graphs.graphs_for(tiny_model.sam_mask_decoder)
    for image in images:
        p.set_image(image)
        for kw in clicks:
            _same(p.predict(**kw), _eager(tiny_model, image, **kw))
    # the first click of a shape runs eagerly, the second records it; the rest replay it, also on
    # the second image (whose image side was copied into the graph's buffers)
    assert graphs.recorded == 1
    assert graphs.replays == 5
    # a box is two more points: another shape, recorded on its second use
    box = dict(point_coords=[[30.0, 40.0]], point_labels=[1], box=[10.0, 10.0, 80.0, 60.0])
    for _ in range(3):
        _same(p.predict(**box), _eager(tiny_model, images[1], **box))
    assert (graphs.recorded, graphs.replays) == (2, 7)
    # single-mask output is another recording (the decoder runs other code)
    for _ in range(2):
        _same(
            p.predict(**clicks[0], multimask_output=False),
            _eager(tiny_model, images[1], **clicks[0], multimask_output=False),
        )
    assert graphs.recorded == 3


def test_batched_prompts_and_the_prompt_limit(tiny_model, images, graphed, monkeypatch):
    monkeypatch.setattr(_graphs, "MAX_PROMPTS", 2)
    p = samkit.ImagePredictor(tiny_model)
    p.set_image(images[0])
    graphs = _graphs.graphs_for(tiny_model.sam_mask_decoder)
    two = dict(point_coords=[[[30.0, 40.0]], [[90.0, 50.0]]], point_labels=[[1], [1]])
    three = dict(point_coords=[[[30.0, 40.0]], [[90.0, 50.0]], [[5.0, 5.0]]], point_labels=[[1], [1], [0]])
    for _ in range(3):
        _same(p.predict(**two), _eager(tiny_model, images[0], **two))
        _same(p.predict(**three), _eager(tiny_model, images[0], **three))
    assert (graphs.recorded, graphs.replays) == (1, 2)  # three prompts: always eager


def test_results_are_copies_and_old_graphs_are_dropped(tiny_model, images, graphed, monkeypatch):
    monkeypatch.setattr(_graphs, "MAX_GRAPHS", 2)
    p = samkit.ImagePredictor(tiny_model)
    p.set_image(images[0])
    coords, labels = p._prep_prompts([[30.0, 40.0]], [1], None, None, True)[1:3]
    first = [p._decode(coords, labels) for _ in range(2)][1]
    kept = [t.clone() for t in first]
    other = p._prep_prompts([[100.0, 20.0]], [1], None, None, True)[1]
    second = p._decode(other, labels)
    # the replay for `other` did not write into what the previous one returned
    assert all(torch.equal(a, b) for a, b in zip(first, kept))
    assert not torch.equal(first[0], second[0])
    graphs = _graphs.graphs_for(tiny_model.sam_mask_decoder)
    for n in (2, 3, 4):  # three more shapes, each recorded: only the two latest are kept
        pts = torch.rand(1, n, 2) * 100
        lab = torch.ones(1, n, dtype=torch.int32)
        for _ in range(2):
            p._decode(pts, lab)
    assert graphs.recorded == 4
    assert len(graphs.graphs) == 2


def test_a_failed_recording_warns_once_and_stays_eager(tiny_model, images, graphed, monkeypatch):
    calls = []

    def failing(self, fn, args):
        calls.append(1)
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(_graphs.DecoderGraphs, "_capture", failing)
    p = samkit.ImagePredictor(tiny_model)
    p.set_image(images[0])
    kw = dict(point_coords=[[30.0, 40.0]], point_labels=[1])
    p.predict(**kw)
    with pytest.warns(RuntimeWarning, match="clicks run eagerly"):
        got = p.predict(**kw)
    _same(got, _eager(tiny_model, images[0], **kw))
    for _ in range(3):
        _same(p.predict(**kw), _eager(tiny_model, images[0], **kw))
    assert len(calls) == 1


def test_graphs_only_on_cuda_and_can_be_turned_off(tiny_checkpoint, tiny_model):
    # on the CPU the policy turns graphs off whatever load_model was asked
    p = samkit.ImagePredictor(tiny_model)
    assert tiny_model.policy.cuda_graphs is False
    assert p._use_cuda_graphs() is False
    # on CUDA they are on by default, and load_model(cuda_graphs=False) turns them off
    assert decide("cuda", cuda_bf16=True).cuda_graphs is True
    assert decide("cuda", cuda_graphs=False, cuda_bf16=True).cuda_graphs is False
    off = samkit.load_model("test-tiny", checkpoint=tiny_checkpoint, device="cpu", cuda_graphs=False)
    assert off.policy.cuda_graphs is False
