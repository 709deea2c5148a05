"""``samkit train`` end to end on a tiny generated set: it trains, writes an official checkpoint
that ``samkit segment`` loads, resumes (or does nothing when finished), and bad input is one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from samkit.cli import main
from samkit.train.synthetic import Shapes, write_davis, write_mask_folder


@pytest.fixture(scope="module")
def image_set(tmp_path_factory):
    return write_mask_folder(Shapes(4, source_size=128), tmp_path_factory.mktemp("imgs"))


@pytest.fixture(scope="module")
def video_set(tmp_path_factory):
    return write_davis(Shapes(2, num_frames=4, source_size=128), tmp_path_factory.mktemp("vids"))


def train_args(tiny_checkpoint, out, *extra):
    return [
        "train",
        "--model",
        "test-tiny",
        "--checkpoint",
        str(tiny_checkpoint),
        "--out",
        str(out),
        "--workers",
        "0",
        "--precision",
        "fp32",
        *extra,
    ]


def test_train_images_and_videos_then_segment(tiny_checkpoint, image_set, video_set, tmp_path, capsys):
    images, masks = image_set
    jpeg, ann = video_set
    out = tmp_path / "run"
    args = train_args(
        tiny_checkpoint,
        out,
        "--data",
        f"folder:{images}:{masks}",
        "--data",
        f"davis:{jpeg}:{ann}",
        "--batch-size",
        "2",
        "--batch-size",
        "1",
        "--frames",
        "3",
        "--steps",
        "3",
        "--lr",
        "1e-4",
    )
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "trained 3 steps" in printed and str(out / "checkpoint.pt") in printed
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    sd = torch.load(out / "checkpoint.pt", weights_only=True)
    assert set(sd) == {"model"}
    # the result segments like any official checkpoint
    mask = tmp_path / "mask.png"
    photo = sorted(images.iterdir())[0]
    assert (
        main(
            [
                "segment",
                str(photo),
                "--model",
                "test-tiny",
                "--checkpoint",
                str(out / "checkpoint.pt"),
                "--point",
                "64,64",
                "--out",
                str(mask),
            ]
        )
        == 0
    )
    assert np.array(Image.open(mask)).shape == (128, 128)
    # the same command again: finished, nothing redone
    capsys.readouterr()
    assert main(args) == 0
    assert "already trained 3 steps" in capsys.readouterr().out
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3


def test_validation_split_reports_a_score(tiny_checkpoint, image_set, tmp_path, capsys):
    images, masks = image_set
    args = train_args(
        tiny_checkpoint,
        tmp_path / "v",
        "--data",
        f"folder:{images}:{masks}",
        "--val-fraction",
        "0.25",
        "--epochs",
        "1",
    )
    assert main(args) == 0
    assert "val_miou" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--data", "nonsense"], "bad data spec 'nonsense'"),
        (["--data", "folder:/no/such/dir:/no/masks"], "image folder not found: /no/such/dir"),
        (["--data", "{images}", "--freeze", "decoder"], "cannot freeze 'decoder'"),
        (
            ["--data", "{images}", "--batch-size", "1", "--batch-size", "2"],
            "2 --batch-size values for 1 --data",
        ),
        (["--data", "{images}", "--val", "{images}", "--val-fraction", "0.5"], "not both"),
    ],
)
def test_bad_input_is_one_line(tiny_checkpoint, image_set, tmp_path, capsys, extra, message):
    images, masks = image_set
    spec = f"folder:{images}:{masks}"
    extra = [e.replace("{images}", spec) for e in extra]
    assert main(train_args(tiny_checkpoint, tmp_path / "bad", "--steps", "1", *extra)) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("samkit train: error:") and message in err and "\n" not in err


def test_a_mask_of_the_wrong_size_names_the_file(tiny_checkpoint, image_set, tmp_path, capsys):
    images, masks = image_set
    bad_masks = tmp_path / "masks"
    bad_masks.mkdir()
    for m in sorted(masks.iterdir()):
        Image.open(m).save(bad_masks / m.name)
    victim = sorted(bad_masks.iterdir())[1]
    Image.fromarray(np.ones((50, 60), np.uint8)).save(victim)
    args = train_args(
        tiny_checkpoint, tmp_path / "r", "--data", f"folder:{images}:{bad_masks}", "--steps", "2"
    )
    assert main(args) == 1
    err = capsys.readouterr().err
    assert victim.name in err
    # --skip-bad trains on the rest and lists the file
    assert main([*args, "--skip-bad"]) == 0
    assert victim.name in capsys.readouterr().err


def test_a_checkpoint_of_another_variant_is_refused(tiny_checkpoint, image_set, tmp_path, capsys):
    images, masks = image_set
    args = train_args(tiny_checkpoint, tmp_path / "r", "--data", f"folder:{images}:{masks}", "--steps", "1")
    args[args.index("test-tiny")] = "sam2.1-hiera-tiny"
    assert main(args) == 1
    assert "samkit train: error:" in capsys.readouterr().err
