"""The fixed-size memory bank (VideoPredictor(static_memory=True)): the same tracking as the growing
memory, with shapes that do not depend on the frame index."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import samkit
from fakegraphs import fake_capture
from samkit.kernels.attention import attention, attention_by_matmuls
from videogen import synthetic_frames

FRAMES = synthetic_frames(16)


def track(model, **kw):
    """Forward from frame 0 (an object added on frame 5, a correction on a tracked frame 9, an object
    removed), then backward from the last frame. Returns {(direction, frame): logits}."""
    pred = samkit.VideoPredictor(model, progress=False, **kw)
    state = pred.init_state(FRAMES)
    pred.add_new_points_or_box(state, 0, 1, points=[[15, 30]], labels=[1])
    pred.add_new_points_or_box(state, 0, 2, box=[60, 30, 90, 60])
    pred.add_new_points_or_box(state, 5, 3, points=[[40, 30], [80, 10]], labels=[1, 0])
    pred.add_new_points_or_box(state, 0, 4, points=[[50, 50]], labels=[1])
    out = {}
    for f, _, m in pred.propagate_in_video(state, max_frame_num_to_track=9):
        out["f", f] = m.clone()
    pred.remove_object(state, 4)
    _, _, m = pred.add_new_points_or_box(state, 9, 1, points=[[20, 25]], labels=[0], clear_old_points=False)
    out["click", 9] = m.clone()
    for f, _, m in pred.propagate_in_video(state, 10):
        out["f", f] = m.clone()
    for f, _, m in pred.propagate_in_video(state, 15, reverse=True):
        out["r", f] = m.clone()
    return out


@pytest.fixture(scope="module")
def dynamic(tiny_model):
    return track(tiny_model)


@pytest.mark.parametrize("batch", [False, True])
def test_static_memory_tracks_the_same(tiny_model, dynamic, batch):
    static = track(tiny_model, static_memory=True, batch_objects=batch)
    assert static.keys() == dynamic.keys()
    for k in dynamic:
        torch.testing.assert_close(static[k], dynamic[k], atol=2e-4, rtol=1e-4, msg=f"{k}")
        assert torch.equal(static[k] > 0, dynamic[k] > 0), k


def test_memory_shapes_do_not_depend_on_the_frame(tiny_model):
    """The memory attention sees one memory shape on every tracked frame with the fixed bank; the
    growing memory changes shape while it fills (the reason CUDA graphs could not be used)."""

    def shapes(**kw):
        seen = []
        hook = tiny_model.memory_attention.register_forward_hook(
            lambda m, args, kwargs, out: seen.append(
                (tuple(args[2].shape), kwargs.get("memory_mask") is not None)
            ),
            with_kwargs=True,
        )
        try:
            pred = samkit.VideoPredictor(tiny_model, progress=False, **kw)
            state = pred.init_state(FRAMES[:12])
            pred.add_new_points_or_box(state, 0, 1, points=[[15, 30]], labels=[1])
            pred.add_new_points_or_box(state, 0, 2, box=[60, 30, 90, 60])
            list(pred.propagate_in_video(state))
        finally:
            hook.remove()
        return seen

    static = shapes(static_memory=True, batch_objects=True)
    assert len(static) == 11 and len(set(static)) == 1 and static[0][1]  # one batch of 2, one shape
    assert static[0][0][0] == 2
    dynamic = shapes()
    assert len({s for s, _ in dynamic}) > 1


@pytest.mark.parametrize("matmuls", [False, True])
def test_masked_attention_equals_attention_over_the_valid_keys(matmuls):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, 9, 8, generator=g) for _ in range(3))
    mask = torch.tensor([[1, 1, 0, 1, 0, 0, 1, 1, 1], [0, 1, 1, 1, 1, 1, 1, 1, 0]], dtype=torch.bool)
    for i in range(2):
        want = torch.nn.functional.scaled_dot_product_attention(
            q[i : i + 1], k[i : i + 1, :, mask[i]], v[i : i + 1, :, mask[i]]
        )
        if matmuls:
            got = attention_by_matmuls(q, k, v, mask[:, None, None, :])[i : i + 1]
        else:
            got = attention(q, k, v, key_mask=mask)[i : i + 1]
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert np.isfinite(attention(q, k, v, key_mask=mask).numpy()).all()


# --- the tracking step as a CUDA graph (recording replaced by a re-run, as in tests/predictors/test_graphs.py)


@pytest.fixture()
def graphed(monkeypatch):
    import weakref

    from samkit.predictors import _graphs

    monkeypatch.setattr(_graphs, "_BY_MODEL", weakref.WeakKeyDictionary())
    monkeypatch.setattr(_graphs.StepGraphs, "_capture", fake_capture)
    monkeypatch.setattr(samkit.VideoPredictor, "_use_cuda_graphs", lambda self: True)
    return _graphs


def forward(model, objects=2, frames=8, **kw):
    pred = samkit.VideoPredictor(model, progress=False, static_memory=True, batch_objects=True, **kw)
    state = pred.init_state(FRAMES[:frames])
    for i in range(objects):
        pred.add_new_points_or_box(state, 0, i + 1, points=[[15 + 30 * i, 30]], labels=[1])
    return {f: m.clone() for f, _, m in pred.propagate_in_video(state)}


def test_replayed_steps_equal_eager_ones(tiny_model, graphed):
    replayed = forward(tiny_model)
    graphs = graphed.step_graphs_for(tiny_model)
    # frame 0 is the prompted one; frame 1 runs eagerly (a shape seen once), frame 2 records it
    assert (graphs.recorded, graphs.replays) == (1, 6)
    graphed._BY_MODEL.clear()
    samkit.VideoPredictor._use_cuda_graphs = lambda self: False  # (undone by monkeypatch)
    eager = forward(tiny_model)
    for f in eager:
        assert torch.equal(replayed[f], eager[f]), f


def test_step_graphs_are_keyed_by_shape_and_evicted(tiny_model, graphed, monkeypatch):
    monkeypatch.setattr(graphed, "MAX_STEP_GRAPHS", 1)
    forward(tiny_model, objects=1, frames=4)
    forward(tiny_model, objects=2, frames=4)  # another batch size: another graph
    graphs = graphed.step_graphs_for(tiny_model)
    assert graphs.recorded == 2 and len(graphs.graphs) == 1


def test_a_failed_step_recording_warns_once_and_stays_eager(tiny_model, graphed, monkeypatch):
    def failing(self, fn, args):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(graphed.StepGraphs, "_capture", failing)
    with pytest.warns(RuntimeWarning, match="tracking runs eagerly") as caught:
        got = forward(tiny_model, frames=6)
    assert len(caught) == 1
    graphs = graphed.step_graphs_for(tiny_model)
    assert graphs.failed and graphs.replays == 0
    monkeypatch.setattr(samkit.VideoPredictor, "_use_cuda_graphs", lambda self: False)
    want = forward(tiny_model, frames=6)
    assert all(torch.equal(got[f], want[f]) for f in want)
