"""ONNX export: onnxruntime's outputs equal samkit's PyTorch outputs, the image path's names and shapes
are those third-party SAM 2 exports use, and a clip tracked with the exported graphs equals samkit's
tracking."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import samkit
from conftest import DATA
from samkit.cli import main
from samkit.export import ExportError, OnnxVideoTracker, export_onnx
from samkit.export.onnx import export_variant
from samkit.prompts import Prompt, PromptError
from samkit.transforms import preprocess_images

ort = pytest.importorskip("onnxruntime")  # in the test extra: never skipped there


@pytest.fixture(scope="module")
def exported(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx")
    export_onnx(tiny_model, out)
    sessions = {
        name: ort.InferenceSession(str(out / f"{name}.onnx"), providers=["CPUExecutionProvider"])
        for name in ("encoder", "decoder", "memory_encoder", "memory_attention")
    }
    return out, sessions


def close(got, want, rel=1e-4):
    want = np.asarray(want)
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= rel * max(1.0, np.abs(want).max())


def test_names_and_shapes(exported, tiny_model):
    out, s = exported
    assert not tiny_model.training  # the export leaves the model as it was (eval mode)
    assert [i.name for i in s["encoder"].get_inputs()] == ["image"]
    # the names third-party exports use first; what video tracking needs after them
    assert [o.name for o in s["encoder"].get_outputs()] == [
        "image_embed",
        "high_res_feats_0",
        "high_res_feats_1",
        "vision_feats",
    ]
    assert [i.name for i in s["decoder"].get_inputs()] == [
        "image_embed", "high_res_feats_0", "high_res_feats_1", "point_coords", "point_labels",
        "mask_input", "has_mask_input", "orig_im_size",
    ]  # fmt: skip
    assert [o.name for o in s["decoder"].get_outputs()] == [
        "iou_predictions", "low_res_masks", "masks",
        "object_score_logits", "single_low_res_mask", "single_iou", "obj_ptr",
    ]  # fmt: skip
    assert [i.name for i in s["memory_encoder"].get_inputs()] == [
        "vision_feats", "low_res_mask", "object_score_logits", "is_mask_from_points",
    ]  # fmt: skip
    assert [(i.name, i.shape) for i in s["memory_attention"].get_inputs()] == [
        ("vision_feats", [1, 32, 8, 8]),
        ("memory_feats", [1, 8, 16, 8, 8]),  # 2 prompted-frame slots + 6 recent frames
        ("memory_tpos", [1, 8]),
        ("memory_valid", [1, 8]),
        ("obj_ptrs", [1, 17, 32]),  # 2 + 15 object pointers
        ("obj_ptr_pos", [1, 17]),
        ("obj_ptr_valid", [1, 17]),
    ]
    info = json.loads((out / "samkit-onnx.json").read_text())
    assert info["model"] == "test-tiny" and info["image_size"] == 128 and len(info["mean"]) == 3
    assert info["memory"] == {"cond_frames": 2, "frame_slots": 8, "pointer_slots": 17}
    assert info["tracking"]["num_maskmem"] == 7


@pytest.mark.parametrize("prompt", ["clicks", "box", "mask"])
def test_onnxruntime_equals_samkit(exported, tiny_model, prompt):
    """The embedding and, for clicks, a box, or clicks with a previous mask, the three candidates'
    scores, low-res logits and full-size logits, against the ImagePredictor."""
    _, s = exported
    image = np.random.default_rng(1).integers(0, 256, (90, 140, 3), dtype=np.uint8)
    x = preprocess_images([image], 128, "cpu")
    embed, hr0, hr1, _ = s["encoder"].run(None, {"image": x.numpy()})
    with torch.inference_mode():
        want_embed, (want0, want1) = tiny_model.encode_image(x)
    for got, want in ((embed, want_embed), (hr0, want0), (hr1, want1)):
        close(got, want.numpy())

    pred = samkit.ImagePredictor(tiny_model)
    pred.set_image(image)
    scale = np.array([128 / 140, 128 / 90])
    kw: dict = {}
    if prompt == "box":
        box = np.array([20.0, 15.0, 110.0, 70.0])
        kw = dict(box=box)
        coords, labels = box.reshape(2, 2) * scale, [2, 3]
    else:
        pts = np.array([[30.0, 40.0], [100.0, 50.0]])
        kw = dict(point_coords=pts, point_labels=np.array([1, 0]))
        coords, labels = pts * scale, [1, 0]
    mask_input = np.zeros((1, 1, 32, 32), np.float32)
    if prompt == "mask":
        _, _, previous = pred.predict(**kw)
        mask_input = previous[:1][None].astype(np.float32)
        kw["mask_input"] = previous[:1]
    masks, scores, low = pred.predict(**kw, multimask_output=True, return_logits=True)
    iou, low_got, full, *_ = s["decoder"].run(
        None,
        {
            "image_embed": embed, "high_res_feats_0": hr0, "high_res_feats_1": hr1,
            "point_coords": coords[None].astype(np.float32), "point_labels": np.array([labels], np.float32),
            "mask_input": mask_input, "has_mask_input": np.array([float(prompt == "mask")], np.float32),
            "orig_im_size": np.array([90, 140], np.float32),
        },
    )  # fmt: skip
    close(iou[0], scores)
    close(low_got[0], low)
    close(full[0], masks)
    assert ((full[0] > 0) == (masks > 0)).mean() > 0.999


def test_export_keeps_the_models_mode(tiny_checkpoint, tmp_path):
    model = samkit.load_model("test-tiny", checkpoint=tiny_checkpoint).train()
    export_onnx(model, tmp_path, graphs=("decoder",))  # (one graph: the mode is kept around all of them)
    assert model.training and model.sam_mask_decoder.training
    model.eval()
    export_onnx(model, tmp_path, graphs=("decoder",))
    assert not model.training and not model.sam_mask_decoder.training


def test_bad_input(tiny_model, tmp_path, tiny_checkpoint, capsys):
    with pytest.raises(ExportError, match="opset 11 is not supported"):
        export_onnx(tiny_model, tmp_path, opset=11)
    fast = samkit.load_model("test-tiny", checkpoint=tiny_checkpoint, precision="bf16")
    with pytest.raises(ExportError, match="fp32 model"):
        export_onnx(fast, tmp_path)
    with pytest.raises(ExportError, match="SAM2Model"):
        export_onnx(torch.nn.Linear(2, 2), tmp_path)
    code = main(["export", "onnx", "--out", str(tmp_path), "--opset", "13", "--model", "test-tiny",
                 "--checkpoint", str(tiny_checkpoint)])  # fmt: skip
    assert code == 1 and "--opset 13 is not supported" in capsys.readouterr().err


def test_cli_exports(tmp_path, tiny_checkpoint, capsys):
    code = main(["export", "onnx", "--out", str(tmp_path / "o"), "--model", "test-tiny",
                 "--checkpoint", str(tiny_checkpoint), "--variants", "fp16"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert "exported test-tiny (128 px)" in capsys.readouterr().out
    assert {p.name for p in (tmp_path / "o").iterdir()} == {
        "encoder.onnx",
        "decoder.onnx",
        "memory_encoder.onnx",
        "memory_attention.onnx",
        "samkit-onnx.json",
        "fp16",
    }
    assert (tmp_path / "o" / "fp16" / "decoder.onnx").is_file()
    code = main(["export", "onnx", "--out", str(tmp_path / "o"), "--variants", "int4", "--model", "test-tiny",
                 "--checkpoint", str(tiny_checkpoint)])  # fmt: skip
    assert code == 1 and "--variants: unknown int4" in capsys.readouterr().err


# --- the video path ---------------------------------------------------------------------------


def moving_shapes(n=20, h=72, w=96):
    """A clip: a red square moving right, a green bar standing still."""
    frames = []
    for t in range(n):
        f = np.full((h, w, 3), 40, np.uint8)
        f[20:45, 10 + 2 * t : 35 + 2 * t] = (220, 60, 60)
        f[50:65, 60:80] = (30, 200, 90)
        frames.append(f)
    return frames


def test_tracking_with_onnxruntime_equals_the_video_predictor(exported, tiny_model):
    """A click and a box on frame 0, tracked through 20 frames: every frame's logits at video
    resolution equal VideoPredictor's (without hole filling) within 1e-4 relative."""
    (out, _), model = exported, tiny_model
    frames = moving_shapes()
    pred = samkit.VideoPredictor(model, fill_hole_area=0, progress=False)
    state = pred.init_state(frames)
    pred.add_new_points_or_box(state, 0, 1, points=np.array([[22, 32]]), labels=np.array([1]))
    pred.add_new_points_or_box(state, 0, 2, box=np.array([58, 48, 82, 67]))
    want = {t: masks.numpy() for t, _, masks in pred.propagate_in_video(state)}

    tracker = OnnxVideoTracker(out)
    prompts = {0: {1: {"points": [[22, 32]], "labels": [1]}, 2: Prompt(box=(58.0, 48.0, 82.0, 67.0))}}
    got = dict(tracker.track(frames, prompts))
    assert sorted(got) == list(range(20)) and tracker.obj_ids == [1, 2]
    present = 0
    for t in range(20):
        for i, obj in enumerate((1, 2)):
            close(got[t][obj], want[t][i, 0])
            assert ((got[t][obj] > 0) == (want[t][i, 0] > 0)).all()
            present += int((want[t][i, 0] > 0).any())
    assert present > 20  # the comparison covers masks, not only absent objects (-1024 everywhere)


def test_onnx_tracking_of_a_later_object_and_a_correction_equals_the_stream_tracker(exported, tiny_model):
    """An object started on frame 3 and a correction of the first on frame 8: the masks of the
    StreamTracker (which equal the video predictor driven the same way) on every frame."""
    (out, _), model = exported, tiny_model
    frames = moving_shapes(14)
    prompts = {
        0: {"a": {"points": [[22, 32]]}},
        3: {"b": {"points": [[70, 57], [30, 10]], "labels": [1, 0]}},
        8: {"a": {"points": [[40, 30]], "labels": [0]}},
    }
    stream = samkit.StreamTracker(model, fill_hole_area=0)
    tracker = OnnxVideoTracker(out)
    for t, frame in enumerate(frames):
        want = stream.track(frame, prompts.get(t))
        got = tracker.step(frame, prompts.get(t))
        assert sorted(got) == sorted(want)
        for obj in want:
            assert ((got[obj] > 0) == want[obj]).mean() > 0.999


def test_onnx_tracker_errors(exported, tiny_model, tmp_path):
    (out, _), model = exported, tiny_model
    with pytest.raises(ExportError, match="no samkit ONNX export"):
        OnnxVideoTracker(tmp_path)
    (tmp_path / "samkit-onnx.json").write_text(json.dumps({"image_size": 128}))
    with pytest.raises(ExportError, match="no video graphs"):
        OnnxVideoTracker(tmp_path)
    tracker = OnnxVideoTracker(out)
    frame = moving_shapes(1)[0]
    with pytest.raises(PromptError, match="outside the 96x72 image"):
        tracker.step(frame, {1: {"points": [[200, 10]]}})
    with pytest.raises(PromptError, match="mask prompts are not supported"):
        tracker.step(frame, {1: {"mask": np.ones((72, 96), bool)}})
    assert tracker.obj_ids == []  # nothing started by a refused prompt
    tracker.step(frame, {1: {"points": [[20, 30]]}})
    with pytest.raises(ValueError, match="frame 1 is 50x40, the first was 96x72"):
        tracker.step(np.zeros((40, 50, 3), np.uint8))
    with pytest.raises(ExportError, match="cond_frames must be 2 to 16"):
        export_onnx(model, tmp_path, cond_frames=1)
    with pytest.raises(ExportError, match="choose among encoder, decoder"):
        export_onnx(model, tmp_path, graphs=("decoder", "mask_decoder"))


def iou(a, b):
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else np.logical_and(a, b).sum() / union


# the least IoU of a variant's masks with float32's. fp16 weights keep them (the issue's bar, 0.99).
# int8 weights come close (0.98 to 0.99 here; 0.971 min / 0.988 mean on perturbed full-size weights),
# and onnxruntime's dynamic quantisation moves them further (bench_onnx_variants.py): their bars only
# say the masks are still the object's
BARS = {"fp16": (0.99, 0.99), "int8": (0.97, 0.97), "int8-dynamic": (0.8, 0.8)}  # (click, tracked clip)


@pytest.mark.parametrize("variant", ["fp16", "int8", "int8-dynamic"])
def test_quantized_variants_keep_the_masks(exported, tiny_model, variant):
    """fp16 and int8 weights, int8 matrix products: the same files in a subfolder, and masks close to
    the float32 graphs' -- for clicks on a photo and through a tracked clip."""
    out, s = exported
    d = export_variant(out, variant)
    assert sorted(p.name for p in d.iterdir()) == sorted(
        ["encoder.onnx", "decoder.onnx", "memory_encoder.onnx", "memory_attention.onnx", "samkit-onnx.json"]
    )
    assert json.loads((d / "samkit-onnx.json").read_text())["variant"] == variant
    if variant == "fp16":  # weights are most of a real model's file; here the graph is a large part too
        assert (d / "decoder.onnx").stat().st_size < (out / "decoder.onnx").stat().st_size

    q = {n: ort.InferenceSession(str(d / f"{n}.onnx"), providers=["CPUExecutionProvider"]) for n in s}
    photo = np.asarray(Image.open(DATA / "images" / "truck.jpg").convert("RGB").resize((160, 120)))
    x = preprocess_images([photo], 128, "cpu").numpy()
    ious = []
    for clicks in ([[40.0, 60.0]], [[100.0, 70.0], [20.0, 20.0]]):
        feeds = {
            "point_coords": np.array([clicks], np.float32) * np.float32(128 / 160),
            "point_labels": np.array([[1] + [0] * (len(clicks) - 1)], np.float32),
            "mask_input": np.zeros((1, 1, 32, 32), np.float32),
            "has_mask_input": np.zeros(1, np.float32),
            "orig_im_size": np.array([120, 160], np.float32),
        }
        masks = []
        for sess in (s, q):
            embed, hr0, hr1, _ = sess["encoder"].run(None, {"image": x})
            feats = {"image_embed": embed, "high_res_feats_0": hr0, "high_res_feats_1": hr1}
            masks.append(sess["decoder"].run(["masks"], {**feats, **feeds})[0][0] > 0)
        ious += [iou(a, b) for a, b in zip(*masks)]
    print(variant, "click IoU", np.round(ious, 4))
    assert min(ious) >= BARS[variant][0], ious

    frames = moving_shapes(8)
    prompts = {0: {1: {"points": [[22, 32]]}, 2: {"box": [58, 48, 82, 67]}}}
    want = dict(OnnxVideoTracker(out).track(frames, prompts))
    got = dict(OnnxVideoTracker(d).track(frames, prompts))
    tracked = [iou(got[t][o] > 0, want[t][o] > 0) for t in want for o in (1, 2)]
    print(variant, "tracked IoU", np.round(tracked, 4))
    assert min(tracked) >= BARS[variant][1], tracked
