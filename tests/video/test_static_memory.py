"""The fixed-size memory bank (VideoPredictor(static_memory=True)): the same tracking as the growing
memory, with shapes that do not depend on the frame index."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import samkit
from samkit.kernels.attention import attention, attention_by_matmuls
from videogen import synthetic_frames

FRAMES = synthetic_frames(22)


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
    for f, _, m in pred.propagate_in_video(state, 21, reverse=True):
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
