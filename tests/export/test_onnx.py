"""ONNX export of the image path: onnxruntime's outputs equal samkit's PyTorch outputs, and the names
and shapes are those third-party SAM 2 exports use."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import samkit
from samkit.cli import main
from samkit.export import ExportError, export_onnx
from samkit.transforms import preprocess_images

ort = pytest.importorskip("onnxruntime")  # in the test extra: never skipped there


@pytest.fixture(scope="module")
def exported(tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx")
    export_onnx(tiny_model, out)
    sessions = {
        name: ort.InferenceSession(str(out / f"{name}.onnx"), providers=["CPUExecutionProvider"])
        for name in ("encoder", "decoder")
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
    assert [o.name for o in s["encoder"].get_outputs()] == [
        "image_embed",
        "high_res_feats_0",
        "high_res_feats_1",
    ]
    assert [i.name for i in s["decoder"].get_inputs()] == [
        "image_embed", "high_res_feats_0", "high_res_feats_1", "point_coords", "point_labels",
        "mask_input", "has_mask_input", "orig_im_size",
    ]  # fmt: skip
    assert [o.name for o in s["decoder"].get_outputs()] == ["iou_predictions", "low_res_masks", "masks"]
    info = json.loads((out / "samkit-onnx.json").read_text())
    assert info["model"] == "test-tiny" and info["image_size"] == 128 and len(info["mean"]) == 3


@pytest.mark.parametrize("prompt", ["clicks", "box", "mask"])
def test_onnxruntime_equals_samkit(exported, tiny_model, prompt):
    """The embedding and, for clicks, a box, or clicks with a previous mask, the three candidates'
    scores, low-res logits and full-size logits, against the ImagePredictor."""
    _, s = exported
    image = np.random.default_rng(1).integers(0, 256, (90, 140, 3), dtype=np.uint8)
    x = preprocess_images([image], 128, "cpu")
    embed, hr0, hr1 = s["encoder"].run(None, {"image": x.numpy()})
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
    iou, low_got, full = s["decoder"].run(
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
    export_onnx(model, tmp_path)
    assert model.training and model.sam_mask_decoder.training
    model.eval()
    export_onnx(model, tmp_path)
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
                 "--checkpoint", str(tiny_checkpoint)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert "exported test-tiny (128 px)" in capsys.readouterr().out
    assert {p.name for p in (tmp_path / "o").iterdir()} == {
        "encoder.onnx",
        "decoder.onnx",
        "samkit-onnx.json",
    }
