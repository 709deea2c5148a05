"""``samkit eval vos|clicks|auto`` end to end on generated data and the tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from samkit.cli import main
from samkit.train.synthetic import Shapes, write_mask_folder

from .test_vos import random_video, write_davis


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    images, masks = write_mask_folder(
        Shapes(2, max_objects=2, source_size=96, data_seed=5), tmp_path_factory.mktemp("s")
    )
    return f"folder:{images}:{masks}"


def test_eval_vos_prints_meta_table_and_writes_json(tmp_path, capsys):
    videos = {
        "a": random_video(np.random.default_rng(1), n=5),
        "b": random_video(np.random.default_rng(2), n=5),
    }
    gt, pred = write_davis(tmp_path, videos)
    out = tmp_path / "r" / "vos.json"
    assert (
        main(["eval", "vos", "--gt", str(gt), "--pred", str(pred), "--json", str(out), "--processes", "1"])
        == 0
    )
    printed = capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert set(doc) >= {"J&F", "J", "F", "videos", "samkit"}
    assert f"Global score: J&F: {doc['J&F']:.1f} J: {doc['J']:.1f} F: {doc['F']:.1f}" in printed
    csv = (pred / "results.csv").read_text()
    assert csv.replace(",", " ") in printed  # the table is the CSV with spaces
    assert doc["videos"]["a"]["001"]["J&F"] == pytest.approx(
        (doc["videos"]["a"]["001"]["J"] + doc["videos"]["a"]["001"]["F"]) / 2
    )
    # two prediction folders side by side
    perfect = tmp_path / "perfect"
    for name, frames in videos.items():
        for t, (_, g) in enumerate(frames):
            (perfect / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(g).save(perfect / name / f"{t:05d}.png")
    assert main(["eval", "vos", "--gt", str(gt), "--pred", str(pred), "--pred", str(perfect), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "Global score: J&F: 100.0 J: 100.0 F: 100.0" in printed and "predictions" in printed


def test_eval_vos_errors_are_one_line(tmp_path, capsys):
    gt, pred = write_davis(tmp_path, {"a": random_video(np.random.default_rng(1), n=4)})
    (pred / "a" / "00002.png").unlink()
    assert main(["eval", "vos", "--gt", str(gt), "--pred", str(pred), "--processes", "1", "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("samkit eval: error: missing prediction") and "\n" not in err
    assert main(["eval"]) == 1
    assert "samkit eval vos|clicks|auto" in capsys.readouterr().err


def test_eval_clicks_side_by_side(tmp_path, tiny_checkpoint, shapes, capsys):
    out, plot = tmp_path / "clicks.json", tmp_path / "clicks.png"
    args = ["eval", "clicks", "--data", shapes, "--model", "test-tiny", "--checkpoint", str(tiny_checkpoint)]
    args += ["--max-clicks", "3", "--json", str(out), "--plot", str(plot), "--fast", "--exact", "--quiet"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "mIoU@1" in printed and "NoC@90" in printed and "test-tiny fast" in printed
    doc = json.loads(out.read_text())
    assert doc["evaluation"] == "clicks" and [r["settings"]["fast"] for r in doc["runs"]] == [False, True]
    run = doc["runs"][0]
    assert len(run["checkpoint_sha256"]) == 64 and run["samkit"] and run["model"] == "test-tiny"
    assert set(run["scores"]["mIoU@k"]) == {"1", "2", "3"} and "NoC@85" in run["scores"]
    with Image.open(plot) as im:
        assert im.format == "PNG" and im.size[0] > 100


def test_eval_auto(tmp_path, tiny_checkpoint, shapes, capsys):
    out = tmp_path / "auto.json"
    args = ["eval", "auto", "--data", shapes, "--model", "test-tiny", "--checkpoint", str(tiny_checkpoint)]
    args += ["--points-per-side", "4", "--pred-iou-thresh", "0", "--json", str(out), "--quiet"]
    assert main(args) == 0
    assert "AR@1000" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert doc["runs"][0]["settings"]["points_per_side"] == 4 and "AR@100" in doc["runs"][0]["scores"]


def test_eval_bad_arguments(tmp_path, tiny_checkpoint, shapes, capsys):
    assert main(["eval", "clicks", "--data", "davis:a:b", "--model", "test-tiny"]) == 1
    assert "a video dataset" in capsys.readouterr().err
    assert main(["eval", "clicks", "--data", shapes, "--max-clicks", "0"]) == 1
    assert "--max-clicks must be >= 1" in capsys.readouterr().err
    both = [
        "--model",
        "test-tiny",
        "--model",
        "sam2.1-hiera-tiny",
        "--checkpoint",
        "a.pt",
        "--checkpoint",
        "b.pt",
    ]
    assert main(["eval", "auto", "--data", shapes, *both]) == 1
    assert "not both" in capsys.readouterr().err
