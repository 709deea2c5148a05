"""VideoPredictor on the tiny test config: sessions, batching, offloading, memory policy, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import samkit
from samkit.video.tracking import NO_OBJ_SCORE
from videogen import synthetic_frames, write_mp4

FRAMES = synthetic_frames(24)


def make(tiny_model, **kw):
    return samkit.VideoPredictor(tiny_model, progress=False, **kw)


def run(pred, frames=FRAMES, reverse_from=None, extra=None):
    state = pred.init_state(frames)
    pred.add_new_points_or_box(state, 0, 1, points=[[15, 30]], labels=[1])
    pred.add_new_points_or_box(state, 0, 2, box=[60, 30, 90, 60])
    pred.add_new_points_or_box(state, 5, 3, points=[[40, 30], [80, 10]], labels=[1, 0])
    if extra:
        extra(pred, state)
    out = {f: m.clone() for f, _, m in pred.propagate_in_video(state)}
    if reverse_from is not None:
        out.update(
            {("r", f): m.clone() for f, _, m in pred.propagate_in_video(state, reverse_from, reverse=True)}
        )
    return state, out


def assert_same(a, b, atol=1e-4):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=1e-4, msg=f"frame {k}")


def test_shapes_and_ids(tiny_model):
    pred = make(tiny_model)
    state = pred.init_state(FRAMES)
    f, ids, masks = pred.add_new_points_or_box(state, 0, "a", points=[[15, 30]], labels=[1])
    assert (f, ids) == (0, ["a"]) and masks.shape == (1, 1, 72, 96)
    f, ids, masks = pred.add_new_points_or_box(state, 3, "b", box=[60, 30, 90, 60])
    assert ids == ["a", "b"] and masks.shape == (2, 1, 72, 96)
    assert (masks[0] == NO_OBJ_SCORE).all()  # "a" has no output on frame 3 yet
    results = list(pred.propagate_in_video(state))
    assert [r[0] for r in results] == list(range(24))
    assert all(r[2].shape == (2, 1, 72, 96) and torch.isfinite(r[2]).all() for r in results)
    assert state["num_frames"] == 24 and state["video_height"] == 72 and state.obj_ids == ["a", "b"]


def test_batched_objects_equal_one_by_one(tiny_model):
    _, batched = run(make(tiny_model, batch_objects=True), reverse_from=23)
    _, single = run(make(tiny_model, batch_objects=False), reverse_from=23)
    assert_same(batched, single)


def test_prefetching_frames_gives_the_same_masks(tiny_model, monkeypatch):
    from samkit.video.io import FrameCache

    assert make(tiny_model).prefetch_frames is False  # the default on a CPU
    _, plain = run(make(tiny_model, prefetch_frames=False), reverse_from=23)
    asked = []
    real = FrameCache.prefetch
    monkeypatch.setattr(FrameCache, "prefetch", lambda self, i: (asked.append(i), real(self, i))[1])
    pred = make(tiny_model, prefetch_frames=True)
    state, ahead = run(pred, reverse_from=23)
    assert_same(plain, ahead, atol=0)
    assert 23 in asked and 0 in asked  # frames were read ahead, both ways
    assert state.frames._executor is None  # and the reader thread went when each propagation ended


def test_abandoned_propagation_releases_the_reader(tiny_model):
    pred = make(tiny_model, prefetch_frames=True)
    state = pred.init_state(FRAMES)
    pred.add_new_points_or_box(state, 0, 1, points=[[15, 30]], labels=[1])
    gen = pred.propagate_in_video(state)
    next(gen)
    next(gen)
    assert state.frames._executor is not None  # reading ahead while the caller iterates
    gen.close()  # the caller stops early (a break out of the for loop)
    assert state.frames._executor is None and not state.frames._pending
    # tracking again works, and reads ahead again
    frames = [f for f, _, _ in pred.propagate_in_video(state, max_frame_num_to_track=3)]
    assert frames == [0, 1, 2, 3]


def test_offload_flags_give_the_same_masks(tiny_model):
    _, plain = run(make(tiny_model))
    pred = make(tiny_model)
    state = pred.init_state(FRAMES, offload_video_to_cpu=True, offload_state_to_cpu=True)
    assert state.storage_device.type == "cpu"
    pred.add_new_points_or_box(state, 0, 1, points=[[15, 30]], labels=[1])
    pred.add_new_points_or_box(state, 0, 2, box=[60, 30, 90, 60])
    pred.add_new_points_or_box(state, 5, 3, points=[[40, 30], [80, 10]], labels=[1, 0])
    offloaded = {f: m for f, _, m in pred.propagate_in_video(state)}
    assert_same(plain, offloaded, atol=0)


def test_video_file_and_frame_list_agree(tiny_model, tmp_path):
    path = write_mp4(tmp_path / "c.mp4", FRAMES)
    from samkit.video.io import VideoFile

    decoded = [VideoFile(path).frame(i) for i in range(24)]
    _, from_list = run(make(tiny_model), frames=decoded)
    _, from_file = run(make(tiny_model), frames=str(path))
    assert_same(from_list, from_file, atol=0)


@pytest.mark.slow
def test_memory_policy_bounds_state_and_keeps_results(tiny_model):
    frames = synthetic_frames(80)
    policy = make(tiny_model)
    bounded, bounded_out = run(policy, frames=frames)
    full, full_out = run(make(tiny_model, keep_all_outputs=True), frames=frames)
    assert_same(bounded_out, full_out, atol=0)  # one pass reads only what the policy keeps
    assert bounded.state_nbytes() < 0.5 * full.state_nbytes()
    obj = bounded.objects[1]
    trimmed = [f for f, o in obj.non_cond.items() if o.maskmem_features is None]
    # trimmed: tracked frames far from the prompted frames (0 and 5) and from the end of the pass
    assert trimmed and min(trimmed) > policy.keep_window and max(trimmed) < 80 - policy.keep_window
    # object pointers survive trimming: they are what long-range tracking reads
    assert all(o.obj_ptr is not None for o in obj.non_cond.values())
    # more frames, same kept state: bounded
    longer, _ = run(make(tiny_model), frames=synthetic_frames(160))
    assert longer.state_nbytes() < 1.2 * bounded.state_nbytes()


def test_objects_added_after_tracking_and_correction(tiny_model):
    pred = make(tiny_model)
    state, first = run(pred)
    f, ids, masks = pred.add_new_points_or_box(state, 10, 4, points=[[50, 50]], labels=[1])
    assert ids == [1, 2, 3, 4] and masks.shape[0] == 4
    # a correction click on a tracked frame refines from the tracked logits
    f, ids, corrected = pred.add_new_points_or_box(state, 12, 1, points=[[20, 30]], labels=[0])
    assert not state.objects[1].tracked.get(12) and 12 in state.objects[1].temp_non_cond
    second = {f: m for f, _, m in pred.propagate_in_video(state)}
    assert second[23].shape[0] == 4
    assert 10 in state.objects[4].cond and 12 not in state.objects[1].cond


def test_reverse_propagation_covers_earlier_frames(tiny_model):
    pred = make(tiny_model)
    state = pred.init_state(FRAMES)
    pred.add_new_points_or_box(state, 10, 1, points=[[30, 30]], labels=[1])
    forward = [f for f, _, _ in pred.propagate_in_video(state)]
    backward = [f for f, _, _ in pred.propagate_in_video(state, reverse=True)]
    assert forward == list(range(10, 24)) and backward == list(range(10, -1, -1))
    assert all(state.objects[1].tracked[f] is True for f in range(0, 10))
    limited = [f for f, _, _ in pred.propagate_in_video(state, start_frame_idx=20, max_frame_num_to_track=2)]
    assert limited == [20, 21, 22]


def test_clear_prompts_and_remove_object(tiny_model):
    pred = make(tiny_model)
    state, _ = run(pred)
    f, ids, masks = pred.clear_all_prompts_in_frame(state, 5, 3)
    assert 5 not in state.objects[3].cond and 5 in state.objects[3].non_cond
    ids, updated = pred.remove_object(state, 3)
    assert ids == [1, 2] and updated == []  # its prompts were cleared already
    ids, updated = pred.remove_object(state, 2)
    assert ids == [1] and [f for f, _ in updated] == [0]
    assert updated[0][1].shape == (1, 1, 72, 96)
    assert pred.remove_object(state, 99) == ([1], [])
    with pytest.raises(RuntimeError, match="doesn't exist"):
        pred.remove_object(state, 99, strict=True)
    pred.remove_object(state, 1)
    assert state.obj_ids == []
    with pytest.raises(RuntimeError, match="No input points"):
        list(pred.propagate_in_video(state))


def test_add_new_mask(tiny_model):
    pred = make(tiny_model)
    state = pred.init_state(FRAMES)
    mask = np.zeros((72, 96), bool)
    mask[20:40, 5:25] = True
    f, ids, masks = pred.add_new_mask(state, 0, 1, mask)
    assert ((masks[0, 0] > 0).numpy() == mask).mean() > 0.97  # a mask prompt is its own output
    out = list(pred.propagate_in_video(state))
    assert len(out) == 24


def test_fill_hole_area_and_non_overlap(tiny_model):
    _, overlapping = run(make(tiny_model, fill_hole_area=0))
    _, exclusive = run(make(tiny_model, fill_hole_area=0, non_overlap_masks=True))
    for f in exclusive:
        fg = (exclusive[f] > 0).sum(0)
        assert (fg <= 1).all()
    assert any(((overlapping[f] > 0).sum(0) > 1).any() for f in overlapping)


def test_reset_state(tiny_model):
    pred = make(tiny_model)
    state, _ = run(pred)
    pred.reset_state(state)
    assert state.obj_ids == []
    pred.add_new_points_or_box(state, 0, 1, points=[[15, 30]], labels=[1])
    assert len(list(pred.propagate_in_video(state))) == 24


@pytest.mark.parametrize(
    "call, err, match",
    [
        (
            lambda p, s: p.add_new_points_or_box(s, 24, 1, points=[[1, 1]], labels=[1]),
            IndexError,
            "out of range",
        ),
        (
            lambda p, s: p.add_new_points_or_box(s, -1, 1, points=[[1, 1]], labels=[1]),
            IndexError,
            "out of range",
        ),
        (lambda p, s: p.add_new_points_or_box(s, 0, 1, points=[[1, 1]]), ValueError, "together"),
        (lambda p, s: p.add_new_points_or_box(s, 0, 1), ValueError, "at least one"),
        (
            lambda p, s: p.add_new_points_or_box(s, 0, 1, points=[[1, 1], [2, 2]], labels=[1]),
            ValueError,
            "does not match",
        ),
        (lambda p, s: p.add_new_points_or_box(s, 0, 1, points=[[np.nan, 1]], labels=[1]), ValueError, "NaN"),
        (
            lambda p, s: p.add_new_points_or_box(s, 0, 1, points=[[1, 1]], labels=[5]),
            ValueError,
            "labels must be",
        ),
        (lambda p, s: p.add_new_points_or_box(s, 0, 1, box=[1, 2, 3]), ValueError, "4 numbers"),
        (lambda p, s: p.add_new_points_or_box(s, 0, [1], points=[[1, 1]], labels=[1]), TypeError, "hashable"),
        (lambda p, s: p.add_new_mask(s, 0, 1, np.zeros((2, 3, 4))), ValueError, "2-D"),
        (lambda p, s: p.clear_all_prompts_in_frame(s, 0, 7), KeyError, "unknown obj_id"),
        (lambda p, s: list(p.propagate_in_video(s)), RuntimeError, "No input points"),
        (
            lambda p, s: p.add_new_points_or_box(None, 0, 1, points=[[1, 1]], labels=[1]),
            TypeError,
            "init_state",
        ),
        (lambda p, s: list(p.propagate_in_video({"num_frames": 3})), TypeError, "VideoState"),
    ],
)
def test_errors(tiny_model, call, err, match):
    pred = make(tiny_model)
    state = pred.init_state(FRAMES)
    with pytest.raises(err, match=match):
        call(pred, state)


def test_object_without_prompts_is_reported(tiny_model):
    pred = make(tiny_model)
    state = pred.init_state(FRAMES)
    pred.add_new_points_or_box(state, 0, 1, points=[[15, 30]], labels=[1])
    pred.add_new_points_or_box(state, 0, 2, points=[[15, 30]], labels=[1])
    pred.clear_all_prompts_in_frame(state, 0, 2)
    with pytest.raises(RuntimeError, match="object id 2"):
        list(pred.propagate_in_video(state))


@pytest.mark.parametrize("fast_bf16", [True, False])
def test_fast_model_tracks_with_bf16_memory_attention(tiny_checkpoint, tiny_model, mock_cpu, fast_bf16):
    """A precision='bf16' model tracks with its memory attention under bf16 autocast where bf16 is
    fast (and in float32 elsewhere); its masks stay close to the exact path's, and a float32 model is
    never autocast."""
    mock_cpu(avx512_bf16=fast_bf16)
    fast = samkit.load_model("test-tiny", checkpoint=tiny_checkpoint, device="cpu", precision="bf16")
    seen = []
    attn = fast.memory_attention.layers[0].cross_attn_image
    attn.register_forward_hook(lambda m, args, out: seen.append(out.dtype))
    _, got = run(make(fast), frames=FRAMES[:10])
    assert seen and set(seen) == {torch.bfloat16 if fast_bf16 else torch.float32}
    assert all(m.dtype == torch.float32 and torch.isfinite(m).all() for m in got.values())

    _, want = run(make(tiny_model), frames=FRAMES[:10])
    inter = sum(int(((got[f] > 0) & (want[f] > 0)).sum()) for f in want)
    union = sum(int(((got[f] > 0) | (want[f] > 0)).sum()) for f in want)
    assert union > 0 and inter / union > 0.9  # the fast path's disagreement is bounded
    assert not torch.is_autocast_enabled("cpu")
    with tiny_model.fast_autocast():  # the exact model: no autocast, whatever the CPU
        assert not torch.is_autocast_enabled("cpu")
