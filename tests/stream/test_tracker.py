"""StreamTracker on the tiny test config: the video predictor's masks frame by frame, flat memory,
save/restore, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import samkit
from samkit.stream import StreamError, StreamTracker
from videogen import synthetic_frames

FRAMES = synthetic_frames(26)
# frame -> prompts given with it: two objects at the start, one added later, a correction mid-stream
SCHEDULE = {
    0: {1: {"points": [[15, 30]], "labels": [1]}, 2: {"box": [60, 30, 90, 60]}},
    7: {3: {"points": [[40, 30], [80, 10]], "labels": [1, 0]}},
    15: {1: {"points": [[45, 30]], "labels": [0]}},
    19: {"d": {"mask": np.pad(np.ones((10, 12), bool), ((30, 32), (50, 34)))}},
}


def predictor_masks(model, frames, schedule):
    """The video predictor driven as a live user would: prompts on a frame, propagation up to the
    next prompted frame (inclusive), its prompts, and so on. Returns {frame: {obj_id: HxW bool}}."""
    pred = samkit.VideoPredictor(model, progress=False)
    state = pred.init_state(frames)
    out = {}
    prompted = sorted(schedule)
    for k, f in enumerate(prompted):
        for obj, p in schedule[f].items():
            if "mask" in p:
                _, ids, m = pred.add_new_mask(state, f, obj, p["mask"])
            else:
                _, ids, m = pred.add_new_points_or_box(
                    state, f, obj, points=p.get("points"), labels=p.get("labels"), box=p.get("box")
                )
        out[f] = dict(zip(ids, (m[:, 0] > 0).numpy()))
        last = prompted[k + 1] if k + 1 < len(prompted) else len(frames) - 1
        for i, ids, m in pred.propagate_in_video(state, f + 1, last - f - 1):
            out[i] = dict(zip(ids, (m[:, 0] > 0).numpy()))
    return out


def stream_masks(session, frames, schedule, start=0):
    return {i: session.track(frames[i], schedule.get(i)) for i in range(start, len(frames))}


def assert_same(a, b):
    assert a.keys() == b.keys()
    for f in a:
        assert list(a[f]) == list(b[f]), f"frame {f}: objects {list(a[f])} != {list(b[f])}"
        for o in a[f]:
            np.testing.assert_array_equal(a[f][o], b[f][o], err_msg=f"frame {f}, object {o}")


@pytest.fixture(scope="module")
def expected(tiny_model):
    return predictor_masks(tiny_model, FRAMES, SCHEDULE)


def test_stream_equals_video_predictor(tiny_model, expected):
    got = stream_masks(StreamTracker(tiny_model), FRAMES, SCHEDULE)
    assert_same(got, expected)
    assert any(m.any() for f in got.values() for m in f.values())  # not trivially empty
    assert list(got[25]) == [1, 2, 3, "d"]


def test_batched_objects_give_the_same_masks(tiny_model, expected):
    assert_same(stream_masks(StreamTracker(tiny_model, batch_objects=True), FRAMES, SCHEDULE), expected)


def test_memory_stays_flat(tiny_model):
    """Past the keep window the session holds the same outputs and bytes however long it runs."""
    session = StreamTracker(tiny_model)
    frames = synthetic_frames(70, seed=1)
    held, nbytes = {}, {}
    for i, frame in enumerate(frames):
        session.track(frame, SCHEDULE.get(i) if i < 8 else None)
        held[i], nbytes[i] = session.frames_held(), session.state_nbytes()
    w = session.keep_window
    # three objects, each: its prompted frame + the last keep_window + 1 tracked frames
    assert held[69] == 3 * (w + 2)
    assert held[40] == held[69] and nbytes[40] == nbytes[69]
    assert nbytes[69] < 2 * nbytes[20]


def test_save_and_restore_continue_the_same(tiny_model, tiny_checkpoint, tmp_path):
    a = StreamTracker(tiny_model)
    stream_masks_first = {i: a.track(FRAMES[i], SCHEDULE.get(i)) for i in range(12)}
    assert stream_masks_first[11]
    a.save(tmp_path / "s.stream")
    b = StreamTracker.restore(
        samkit.load_model("test-tiny", checkpoint=tiny_checkpoint), tmp_path / "s.stream"
    )
    assert b.frame_index == 11 and b.obj_ids == a.obj_ids and b.frame_size == (72, 96)
    assert_same(stream_masks(b, FRAMES, SCHEDULE, 12), stream_masks(a, FRAMES, SCHEDULE, 12))


def test_restore_refuses_another_model(tiny_model, tmp_path):
    from conftest import random_tiny_state_dict

    session = StreamTracker(tiny_model)
    session.track(FRAMES[0], SCHEDULE[0])
    blob = session.save()
    torch.save({"model": random_tiny_state_dict(seed=7)}, tmp_path / "other.pt")
    other = samkit.load_model("test-tiny", checkpoint=tmp_path / "other.pt")
    with pytest.raises(StreamError, match="other test-tiny weights"):
        StreamTracker.restore(other, blob)
    with pytest.raises(StreamError, match="not a samkit stream state"):
        StreamTracker.restore(tiny_model, b"not a state")


def test_bad_input_leaves_the_session_as_it_was(tiny_model):
    session = StreamTracker(tiny_model)
    session.track(FRAMES[0], SCHEDULE[0])
    bad = [
        ("dtype uint8", FRAMES[1].astype(np.float32), None),
        ("outside the 96x72", FRAMES[1], {1: {"points": [[500, 10]], "labels": [1]}}),
        ("not a tracked object", FRAMES[1], {9: {"points": [[10, 10]], "labels": [0]}}),
        ("unknown prompt keys", FRAMES[1], {1: {"clicks": [[10, 10]]}}),
        ("a mask must be 72x96", FRAMES[1], {5: {"mask": np.ones((10, 10), bool)}}),
        ("ints or strings", FRAMES[1], {(1, 2): {"box": [0, 0, 5, 5]}}),
    ]
    for match, frame, prompts in bad:
        with pytest.raises(StreamError, match=match):
            session.track(frame, prompts)
    assert session.frame_index == 0 and session.obj_ids == [1, 2]
    with pytest.raises(StreamError, match="unknown object 7"):
        session.remove_object(7)
    session.remove_object(1)
    assert list(session.track(FRAMES[1])) == [2]


def test_a_frame_of_another_size_is_resized_with_one_warning(tiny_model):
    session = StreamTracker(tiny_model)
    session.track(FRAMES[0], SCHEDULE[0])
    with pytest.warns(UserWarning, match="resized to the stream's size"):
        masks = session.track(np.ascontiguousarray(FRAMES[1][::2, ::2]))
    assert masks[1].shape == (72, 96)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        session.track(np.ascontiguousarray(FRAMES[2][::2, ::2]))
    assert session.resized_frames == 2


def test_a_frame_that_fails_halfway_is_undone(tiny_model, monkeypatch):
    """An error in the middle of a frame (after the known objects were tracked, while a new object
    is added) leaves the session as before it: the next frames give what they would have given."""
    clean, broken = StreamTracker(tiny_model), StreamTracker(tiny_model)
    for i in range(4):
        clean.track(FRAMES[i], SCHEDULE.get(i))
        broken.track(FRAMES[i], SCHEDULE.get(i))
    real = samkit.VideoPredictor.add_new_points_or_box

    def fail(self, state, frame_idx, obj_id, **kw):
        real(self, state, frame_idx, obj_id, **kw)  # the object exists now, then something breaks
        raise KeyboardInterrupt

    monkeypatch.setattr(samkit.VideoPredictor, "add_new_points_or_box", fail)
    with pytest.raises(KeyboardInterrupt):
        broken.track(FRAMES[9], {5: {"box": [10, 10, 40, 40]}})
    monkeypatch.undo()
    assert broken.frame_index == 3 and broken.obj_ids == [1, 2]
    assert broken.frames_held() == clean.frames_held()
    assert_same(stream_masks(broken, FRAMES[:12], {}, 4), stream_masks(clean, FRAMES[:12], {}, 4))
