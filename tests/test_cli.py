"""`samkit` CLI, run in-process through samkit.cli.main."""

from __future__ import annotations

import json
from contextlib import nullcontext

import numpy as np
import pytest
from PIL import Image

from samkit.cli import main


@pytest.fixture()
def photo(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 256, (90, 140, 3), dtype=np.uint8)).save(path)
    return path


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_segment_writes_mask_overlay_and_json(capsys, tmp_path, photo, tiny_checkpoint):
    mask, overlay = tmp_path / "out" / "mask.png", tmp_path / "out" / "overlay.png"
    code, out, err = run(
        capsys,
        "segment",
        photo,
        "--point",
        "70,45",
        "--point",
        "20,20:0",
        "--box",
        "5,5,120,80",
        "--out",
        mask,
        "--overlay",
        overlay,
        "--json",
        "--model",
        "test-tiny",
        "--checkpoint",
        tiny_checkpoint,
        "--device",
        "cpu",
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["width"] == 140 and result["height"] == 90 and result["model"] == "test-tiny"
    (m,) = result["masks"]
    assert 0.0 <= m["score"] <= 1.0
    png = np.array(Image.open(mask))
    assert png.shape == (90, 140) and set(np.unique(png)) <= {0, 255}
    assert m["area"] == int((png == 255).sum())
    if m["area"]:
        ys, xs = np.nonzero(png)
        assert m["bbox"] == [
            int(xs.min()),
            int(ys.min()),
            int(xs.max() - xs.min() + 1),
            int(ys.max() - ys.min() + 1),
        ]
    ov = np.array(Image.open(overlay))
    assert ov.shape == (90, 140, 3)
    assert not np.array_equal(ov, np.array(Image.open(photo)))  # something was drawn


def test_segment_multimask_writes_three_ranked_files(capsys, tmp_path, photo, tiny_checkpoint):
    code, out, err = run(
        capsys,
        "segment",
        photo,
        "--point",
        "70,45",
        "--multimask",
        "--out",
        tmp_path / "m.png",
        "--overlay",
        tmp_path / "o.png",
        "--json",
        "--model",
        "test-tiny",
        "--checkpoint",
        tiny_checkpoint,
    )
    assert code == 0, err
    result = json.loads(out)
    assert [m["rank"] for m in result["masks"]] == [0, 1, 2]
    scores = [m["score"] for m in result["masks"]]
    assert scores == sorted(scores, reverse=True)
    for r in range(3):
        assert (tmp_path / f"m_{r}.png").exists()
    # one overlay per candidate, each showing only its own mask
    photo_px = np.array(Image.open(photo).convert("RGB")).astype(int)
    for r in range(3):
        mask = np.array(Image.open(tmp_path / f"m_{r}.png")) > 0
        tinted = (
            np.abs(np.array(Image.open(tmp_path / f"o_{r}.png").convert("RGB")).astype(int) - photo_px).sum(
                -1
            )
            > 0
        )
        assert tinted[mask].mean() > 0.9 and tinted[~mask].mean() < 0.1
    assert not (tmp_path / "o.png").exists()


def test_segment_same_mask_as_python_api(capsys, tmp_path, photo, tiny_checkpoint, tiny_model):
    import samkit

    code, _, err = run(
        capsys,
        "segment",
        photo,
        "--box",
        "5,5,120,80",
        "--out",
        tmp_path / "m.png",
        "--model",
        "test-tiny",
        "--checkpoint",
        tiny_checkpoint,
    )
    assert code == 0, err
    p = samkit.ImagePredictor(tiny_model)
    p.set_image(np.array(Image.open(photo)))
    masks, _, _ = p.predict(box=[5, 5, 120, 80], multimask_output=False)
    np.testing.assert_array_equal(np.array(Image.open(tmp_path / "m.png")) == 255, masks[0] > 0)


@pytest.mark.parametrize(
    "argv, code, fragment",
    [
        (["segment", "{photo}", "--out", "x.png"], 1, "at least one --point"),
        (["segment", "{photo}", "--point", "70,45"], 1, "nothing to write"),
        (["segment", "{missing}", "--point", "1,1", "--out", "x.png"], 1, "image not found"),
        (["segment", "{photo}", "--point", "1000,45", "--out", "x.png"], 1, "outside the 140x90 image"),
        (["segment", "{photo}", "--point", "70,45", "--out", "x.png", "--model", "sam9"], 1, "unknown model"),
        (
            ["segment", "{photo}", "--point", "70,45", "--out", "x.png", "--checkpoint", "{missing}"],
            1,
            "not found",
        ),
        (["segment", "{photo}", "--point", "70,45", "--out", "x.png", "--device", "cuda:7"], 1, "device"),
        (["segment", "{photo}", "--point", "70;45", "--out", "x.png"], 2, "X,Y or X,Y:LABEL"),
        (["segment", "{photo}", "--point", "70,45:3", "--out", "x.png"], 2, "label must be 1"),
        (["segment", "{photo}", "--box", "1,2,3", "--out", "x.png"], 2, "4 numbers"),
        (["segment", "{photo}", "--box", "10,10,5,5", "--out", "x.png"], 2, "X1 > X0"),
    ],
)
def test_errors_are_one_line(capsys, tmp_path, photo, tiny_checkpoint, argv, code, fragment):
    argv = [a.format(photo=photo, missing=tmp_path / "missing.jpg") for a in argv]
    if "--model" not in argv and "--checkpoint" not in argv:
        argv += ["--model", "test-tiny", "--checkpoint", str(tiny_checkpoint)]
    elif "--checkpoint" not in argv:
        argv += ["--checkpoint", str(tiny_checkpoint)]
    else:
        argv += ["--model", "test-tiny"]
    with pytest.raises(SystemExit) if code == 2 else nullcontext() as exc:
        rc = main(argv)
    out, err = capsys.readouterr()
    if code == 2:
        assert exc.value.code == 2
    else:
        assert rc == code
        assert len(err.strip().splitlines()) == 1, err
        assert "Traceback" not in err
    assert fragment in err


def test_corrupt_checkpoint_is_one_line(capsys, tmp_path, photo):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00" * 100)
    code, _, err = run(
        capsys,
        "segment",
        photo,
        "--point",
        "1,1",
        "--out",
        tmp_path / "x.png",
        "--model",
        "test-tiny",
        "--checkpoint",
        bad,
    )
    assert code == 1 and len(err.strip().splitlines()) == 1 and "corrupt" in err


def test_models_lists_the_eight_variants(capsys):
    code, out, _ = run(capsys, "models", "--json")
    assert code == 0
    rows = json.loads(out)
    assert [r["name"] for r in rows][:4] == [
        "sam2-hiera-tiny",
        "sam2-hiera-small",
        "sam2-hiera-base-plus",
        "sam2-hiera-large",
    ]
    assert len(rows) == 8 and all(r["params_m"] > 30 for r in rows)
    code, out, _ = run(capsys, "models")
    assert "sam2.1-hiera-large" in out and "cached" in out


def test_download_test_config_fails_cleanly(capsys):
    code, _, err = run(capsys, "download", "test-tiny")
    assert code == 1 and "no official weights" in err


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out, _ = capsys.readouterr()
    for cmd in ("segment", "models", "download"):
        assert cmd in out
    assert main([]) == 2


# --- samkit track ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from videogen import synthetic_frames, write_mp4

    return write_mp4(tmp_path_factory.mktemp("clip") / "clip.mp4", synthetic_frames(12))


def test_track_writes_masks_annotations_and_overlay(capsys, tmp_path, clip, tiny_checkpoint):
    import av
    import pycocotools.mask as coco

    out = tmp_path / "result"
    code, stdout, err = run(
        capsys,
        "track",
        clip,
        "--prompt",
        "3:1:15,30",
        "--prompt",
        "3:1:80,10:0",
        "--prompt",
        "0:car:box=60,30,90,60",
        "--out",
        out,
        "--quiet",
        "--model",
        "test-tiny",
        "--checkpoint",
        tiny_checkpoint,
    )
    assert code == 0, err
    assert "through 12 of 12 frames" in stdout
    ann = json.loads((out / "annotations.json").read_text())
    assert ann["complete"] is True and ann["video_frame_count"] == 12
    assert ann["masklet_id"] == ["car", 1] and ann["frame_indices"] == list(range(12))
    assert ann["video_height"] == 72 and ann["video_width"] == 96
    for f, per_obj in zip(ann["frame_indices"], ann["masklet"]):
        for obj_id, r in zip(ann["masklet_id"], per_obj):
            png = np.array(Image.open(out / "masks" / str(obj_id) / f"{f:05d}.png")) > 0
            decoded = coco.decode({"size": r["size"], "counts": r["counts"].encode()}).astype(bool)
            np.testing.assert_array_equal(decoded, png)
    with av.open(str(out / "overlay.mp4")) as c:
        frames = list(c.decode(video=0))
    assert len(frames) == 12 and frames[0].width == 96


def test_track_bad_inputs_are_one_line(capsys, tmp_path, clip, tiny_checkpoint):
    base = [
        "--out",
        str(tmp_path / "o"),
        "--model",
        "test-tiny",
        "--checkpoint",
        str(tiny_checkpoint),
        "--quiet",
    ]
    for argv, fragment in [
        (["track", str(clip)], "at least one --prompt"),
        (["track", str(clip), "--prompt", "0:1:abc"], "bad prompt"),
        (["track", str(clip), "--prompt", "99:1:5,5"], "out of range"),
        (["track", str(clip), "--prompt", "0:1:500,5"], "outside"),
        (["track", str(tmp_path / "missing.mp4"), "--prompt", "0:1:5,5"], "not found"),
    ]:
        code, _, err = run(capsys, *argv, *base)
        assert code == 1 and fragment in err and len(err.strip().splitlines()) == 1, (argv, err)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"garbage" * 50)
    code, _, err = run(capsys, "track", bad, "--prompt", "0:1:5,5", *base)
    assert code == 1 and "cannot read video" in err


def test_track_failure_halfway_keeps_written_frames(capsys, tmp_path, clip, tiny_checkpoint, monkeypatch):
    """A video that breaks at frame 7: frames before it stay written and the error says where."""
    from samkit.video.io import VideoFile, VideoReadError

    real = VideoFile.frame

    def broken(self, index):
        if index >= 7:
            raise VideoReadError(f"cannot decode frame {index} of {self.path}: corrupt data")
        return real(self, index)

    monkeypatch.setattr(VideoFile, "frame", broken)
    out = tmp_path / "partial"
    code, _, err = run(
        capsys,
        "track",
        clip,
        "--prompt",
        "0:1:15,30",
        "--out",
        out,
        "--quiet",
        "--model",
        "test-tiny",
        "--checkpoint",
        tiny_checkpoint,
    )
    assert code == 1 and "stopped at frame 7" in err and "7 frames written" in err
    written = sorted(p.name for p in (out / "masks" / "1").iterdir())
    assert written == [f"{i:05d}.png" for i in range(7)]
    for p in (out / "masks" / "1").iterdir():
        Image.open(p).verify()  # complete files, no partial writes
    ann = json.loads((out / "annotations.json").read_text())
    assert (
        ann["complete"] is False and ann["stopped_at_frame"] == 7 and ann["frame_indices"] == list(range(7))
    )
    import av

    with av.open(str(out / "overlay.mp4")) as c:  # the overlay of the frames done
        assert len(list(c.decode(video=0))) == 7


@pytest.mark.parametrize(
    "flags, frames",
    [
        (["--max-frames", "2"], [3, 4, 5, 6, 7]),
        (["--max-frames", "2", "--reverse-only"], [3, 4, 5]),
        (["--start-frame", "8", "--max-frames", "1"], [7, 8, 9]),
        (["--reverse-only"], [0, 1, 2, 3, 4, 5]),
    ],
)
def test_track_part_of_a_video(capsys, tmp_path, clip, tiny_checkpoint, flags, frames):
    out = tmp_path / "part"
    code, stdout, err = run(
        capsys,
        "track",
        clip,
        "--prompt",
        "5:1:15,30",
        "--out",
        out,
        "--quiet",
        "--no-overlay",
        "--model",
        "test-tiny",
        "--checkpoint",
        tiny_checkpoint,
        *flags,
    )
    assert code == 0, err
    ann = json.loads((out / "annotations.json").read_text())
    assert ann["frame_indices"] == frames and ann["complete"] is True
    assert sorted(int(p.stem) for p in (out / "masks" / "1").iterdir()) == frames
    assert f"through {len(frames)} of 12 frames" in stdout


def test_track_frame_range_errors(capsys, tmp_path, clip, tiny_checkpoint):
    base = [
        "--out",
        str(tmp_path / "o"),
        "--model",
        "test-tiny",
        "--checkpoint",
        str(tiny_checkpoint),
        "--quiet",
    ]
    for flags, fragment in [
        (["--max-frames", "0"], "--max-frames must be >= 1"),
        (["--start-frame", "-1"], "--start-frame must be >= 0"),
        (["--start-frame", "40"], "start frame 40 out of range"),
    ]:
        code, _, err = run(capsys, "track", clip, "--prompt", "0:1:5,5", *flags, *base)
        assert code == 1 and fragment in err, (flags, err)


@pytest.mark.slow
def test_bench_prints_table_and_json(capsys, tmp_path, tiny_checkpoint):
    img = tmp_path / "i.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8)).save(img)
    code, out, err = run(
        capsys,
        "bench",
        "--image",
        img,
        "--runs",
        "1",
        "--model",
        "test-tiny",
        "--checkpoint",
        tiny_checkpoint,
    )
    assert code == 0, err
    payload = json.loads(next(line[5:] for line in out.splitlines() if line.startswith("JSON ")))
    row = payload["rows"]["samkit"]
    assert set(row) == {
        "encode_s",
        "encode_batch_img_s",
        "click_ms",
        "click8_ms",
        "auto_s",
        "video1_s",
        "video4_s",
    }
    assert all(v > 0 for v in row.values())
    assert set(payload["rows"]["samkit-fast"]) == set(row)  # every figure on the fast path too
    agree = payload["info"]["fast_vs_exact"]
    assert 0.0 <= agree["min_iou"] <= agree["mean_iou"] <= 1.0 and agree["max_score_diff"] >= 0.0
    assert "fast vs exact" in out
    assert "encode (s)" in out and "not measured" in out  # test-tiny has no reference config
    # the fast path is timed as a server runs it: compiled upsampling, compiled before the timings
    assert isinstance(payload["info"]["fast_compile_s"], float) and "compiled in" in out


def test_models_policy_prints_this_machines_decisions(capsys):
    """`samkit models --policy` decides the policy for --device/--fast without loading a model."""
    from samkit.policy import decide

    code, out, err = run(capsys, "models", "--policy", "--device", "cpu")
    assert code == 0, err
    assert out.strip() == decide("cpu", "fp32").describe()
    lines = dict(line.split(": ", 1) for line in out.strip().splitlines())
    assert lines["device"] == "cpu" and lines["precision"] == "fp32"
    code, out, err = run(capsys, "models", "--policy", "--device", "cpu", "--fast", "--json")
    assert code == 0, err
    assert json.loads(out) == decide("cpu", "bf16").as_dict() and json.loads(out)["precision"] == "bf16"


def test_command_line_conventions(capsys, tmp_path, photo, tiny_checkpoint):
    """Usage errors are one line with exit status 2; a negative coordinate is a value, not an option;
    options that do not apply are not offered; test configs stay out of user-facing lists."""
    from samkit.cli import main

    base = ["--model", "test-tiny", "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "m.png")]
    # "--point -5,10" parses (and is then refused as outside the image, by the shared prompt rules)
    assert main(["segment", str(photo), "--point", "-5,10", *base]) == 1
    err = capsys.readouterr().err
    assert "point -5,10 lies outside" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as e:
        main(["segment", str(photo), "--point", "abc", *base])
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1
    assert "point must look like X,Y or X,Y:LABEL" in err and "see samkit segment --help" in err
    with pytest.raises(SystemExit) as e:
        main(["download", "--fast"])
    assert e.value.code == 2 and "unrecognized arguments: --fast" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    assert "port to listen on (default 8000)" in capsys.readouterr().out
    assert main(["segment", str(photo), "--point", "5,5", "--model", "nope", "--out", "x.png"]) == 1
    err = capsys.readouterr().err
    assert "unknown model 'nope'" in err and "sam2.1-hiera-tiny" in err and "test-tiny" not in err
