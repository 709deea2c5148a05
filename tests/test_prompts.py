"""One prompt type and one set of rules (samkit.prompts), and every entry point applying them: the
image and video predictors, the batch prompt file, `samkit segment` / `samkit track`, and the server's
image and video routes give the same answer to the same mistake."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

import samkit
from samkit import cli
from samkit.prompts import (
    Prompt,
    PromptError,
    box_tensor,
    parse_box,
    parse_frame_prompt,
    parse_point,
    point_tensors,
)
from samkit.server import ServerConfig, create_app
from videogen import synthetic_frames, write_mp4

# --- the type and its rules ---------------------------------------------------------------------


def test_fields_default_labels_to_one_and_keep_the_box():
    p = Prompt.from_fields([[1, 2], [3.5, 4]], None, [0, 0, 10, 10])
    assert p.points == ((1.0, 2.0), (3.5, 4.0)) and p.labels == (1, 1) and p.box == (0.0, 0.0, 10.0, 10.0)
    assert p.point_coords == [[1.0, 2.0], [3.5, 4.0]] and p.point_labels == [1, 1]
    assert Prompt.from_fields([[1, 2]], [], None).labels == (1,)  # an empty list means "default" too
    assert Prompt.from_fields(None, None, [0, 0, 5, 5]).point_coords is None
    assert (
        Prompt.from_fields([[1, 2]]).multimask
        and not Prompt.from_fields([[1, 2]], box=[0, 0, 5, 5]).multimask
    )
    assert Prompt.from_fields([[1, 2]], [0], [0, 0, 5, 5]).as_dict() == {
        "points": [[1.0, 2.0]],
        "labels": [0],
        "box": [0.0, 0.0, 5.0, 5.0],
    }


@pytest.mark.parametrize(
    "points,labels,box,match",
    [
        (None, None, None, "give 'points' and/or 'box'"),
        ([[1]], None, None, r"'points' must be a list of \[x, y\] numbers"),
        ([[1, float("nan")]], None, None, "'points' must be"),
        ([[1, True]], None, None, "'points' must be"),
        ([[1, 2]], [1, 1], None, "1 points but 2 labels"),
        ([[1, 2]], [2], None, "labels must be 1 .object. or 0 .background., got \\[2\\]"),
        ([[1, 2]], [1.0], None, "labels must be 1"),
        ([[1, 2]], [True], None, "labels must be 1"),
        (None, None, [0, 0, 5], r"'box' must be \[x0, y0, x1, y1\]"),
        (None, None, [5, 0, 1, 5], "x1 > x0 and y1 > y0"),
    ],
)
def test_bad_fields_say_what_is_wrong(points, labels, box, match):
    with pytest.raises(PromptError, match=match):
        Prompt.from_fields(points, labels, box, where="here")
    with pytest.raises(PromptError, match="^here: "):
        Prompt.from_fields(points, labels, box, where="here")


def test_bounds():
    Prompt.from_fields([[0, 0], [99.5, 49.9]]).check_bounds(100, 50)
    for pt in ([100, 10], [-1, 10], [10, 50], [9000, 600]):
        with pytest.raises(PromptError, match=f"point {pt[0]:g},{pt[1]:g} lies outside the 100x50 image"):
            Prompt.from_fields([pt]).check_bounds(100, 50)
    Prompt.from_fields(box=[-10, -10, 20, 20]).check_bounds(100, 50)  # overlapping: fine
    with pytest.raises(PromptError, match="box 100,0,120,20 lies outside"):
        Prompt.from_fields(box=[100, 0, 120, 20]).check_bounds(100, 50)


def test_command_line_text():
    assert parse_point("500,375") == (500.0, 375.0, 1)
    assert parse_point("-5,10:0") == (-5.0, 10.0, 0)
    assert parse_box("1,2,3,4") == (1.0, 2.0, 3.0, 4.0)
    for bad, match in (("5", "X,Y or X,Y:LABEL"), ("1,2:7", "label must be 1"), ("inf,2", "finite")):
        with pytest.raises(PromptError, match=match):
            parse_point(bad)
    with pytest.raises(PromptError, match="X1 > X0"):
        parse_box("5,5,1,1")
    frame, obj, p = parse_frame_prompt("3:car:box=1,2,30,40")
    assert (frame, obj, p.box) == (3, "car", (1.0, 2.0, 30.0, 40.0))
    frame, obj, p = parse_frame_prompt("0:2:10,20:0")
    assert (frame, obj, p.points, p.labels) == (0, 2, ((10.0, 20.0),), (0,))
    with pytest.raises(PromptError, match="FRAME:OBJ"):
        parse_frame_prompt("nope")
    with pytest.raises(PromptError, match="label must be 1"):
        parse_frame_prompt("0:1:10,20:5")
    merged = Prompt.from_cli(["1,1"]).merged(Prompt.from_cli(["2,2:0"], "0,0,5,5"))
    assert merged.points == ((1.0, 1.0), (2.0, 2.0)) and merged.labels == (1, 0) and merged.box is not None
    with pytest.raises(PromptError, match="two boxes"):
        Prompt.from_cli(box="0,0,5,5").merged(Prompt.from_cli(box="0,0,6,6"))


def test_arrays_for_the_predictors():
    pts, lab = point_tensors([[1, 2], [3, 4]], [1, 0])
    assert pts.shape == (2, 2) and lab.tolist() == [1, 0]
    assert point_tensors(np.zeros((3, 2, 2)), np.ones((3, 2)))[0].shape == (3, 2, 2)
    with pytest.raises(PromptError, match=r"shape \(N, 2\), got \(3, 2, 2\)"):
        point_tensors(np.zeros((3, 2, 2)), np.ones((3, 2)), batched=False)
    with pytest.raises(PromptError, match="one label per point"):
        point_tensors([[1, 2]], [1, 1])
    with pytest.raises(PromptError, match="NaN or infinite"):
        point_tensors([[1, float("inf")]], [1])
    assert box_tensor([1, 2, 3, 4]).shape == (1, 4)
    with pytest.raises(PromptError, match="4 numbers"):
        box_tensor([1, 2, 3])


# --- every entry point --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def picture():
    rng = np.random.default_rng(1)
    return rng.integers(0, 255, (60, 90, 3), dtype=np.uint8)


def test_image_and_video_predictors_give_the_same_messages(tiny_model, picture):
    ip = samkit.ImagePredictor(tiny_model)
    ip.set_image(picture)
    vp = samkit.VideoPredictor(tiny_model)
    state = vp.init_state([picture, picture])
    for kw_img, kw_vid, match in (
        (dict(point_coords=[[1, 2]], point_labels=[7]), dict(points=[[1, 2]], labels=[7]), "must be 1"),
        (dict(point_coords=[[1, 2]], point_labels=[1, 1]), dict(points=[[1, 2]], labels=[1, 1]), "one label"),
        (dict(box=[1, 2, 3]), dict(box=[1, 2, 3]), "4 numbers"),
        (dict(point_coords=[[1, np.nan]], point_labels=[1]), dict(points=[[1, np.nan]], labels=[1]), "NaN"),
    ):
        with pytest.raises(PromptError, match=match):
            ip.predict(**kw_img)
        with pytest.raises(PromptError, match=match):
            vp.add_new_points_or_box(state, 0, 1, **kw_vid)
    # the reference's leading batch axis of 1 on video points is accepted
    _, ids, _ = vp.add_new_points_or_box(state, 0, 1, points=[[[10, 20]]], labels=[[1]])
    assert ids == [1]


def test_batch_prompt_outside_the_image_fails_that_image(tmp_path, tiny_model, tiny_checkpoint):
    from samkit.batch import BatchSettings, run_batch

    root = tmp_path / "in"
    root.mkdir()
    Image.fromarray(np.zeros((60, 90, 3), np.uint8)).save(root / "a.png")
    Image.fromarray(np.zeros((60, 90, 3), np.uint8)).save(root / "b.png")
    pf = tmp_path / "p.jsonl"
    pf.write_text(
        json.dumps({"image": "a.png", "points": [[9000, 30]]})
        + "\n"
        + json.dumps({"image": "b.png", "points": [[10, 30]]})
        + "\n"
    )
    settings = BatchSettings(model="test-tiny", checkpoint=str(tiny_checkpoint), device="cpu")
    run_batch(root, tmp_path / "out", settings, prompts=pf, model=tiny_model, progress=False)
    rows = {
        r["image"]: r for r in map(json.loads, (tmp_path / "out" / "manifest.jsonl").read_text().splitlines())
    }
    assert rows["b.png"]["status"] == "ok"
    assert rows["a.png"]["status"] == "failed"
    assert rows["a.png"]["error"].endswith("prompt line 1: point 9000,30 lies outside the 90x60 image")


def test_cli_segment_and_track_refuse_points_outside(capsys, tmp_path, tiny_checkpoint, picture):
    img = tmp_path / "p.png"
    Image.fromarray(picture).save(img)
    code = cli.main(
        [
            "segment",
            str(img),
            "--point",
            "9000,30",
            "--out",
            str(tmp_path / "m.png"),
            "--model",
            "test-tiny",
            "--checkpoint",
            str(tiny_checkpoint),
        ]
    )
    err = capsys.readouterr().err
    assert (
        code == 1
        and "point 9000,30 lies outside the 90x60 image" in err
        and len(err.strip().splitlines()) == 1
    )
    clip = write_mp4(tmp_path / "c.mp4", synthetic_frames(3))
    code = cli.main(
        [
            "track",
            str(clip),
            "--prompt",
            "0:1:500,30",
            "--out",
            str(tmp_path / "t"),
            "--model",
            "test-tiny",
            "--checkpoint",
            str(tiny_checkpoint),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "frame 0: point 500,30 lies outside the 96x72 image" in err


def test_server_routes_share_the_rules(tiny_model, picture, tmp_path):
    import io

    buf = io.BytesIO()
    Image.fromarray(picture).save(buf, format="PNG")
    clip = write_mp4(tmp_path / "c.mp4", synthetic_frames(3))
    with TestClient(create_app(ServerConfig(model="test-tiny"), model=tiny_model)) as client:
        image_id = client.post("/v1/images", files={"file": ("p.png", buf.getvalue(), "image/png")}).json()[
            "image_id"
        ]
        vid = client.post("/v1/videos", files={"file": ("c.mp4", clip.read_bytes(), "video/mp4")}).json()[
            "video_id"
        ]

        def both(body):
            a = client.post("/v1/segment", json={"image_id": image_id, **body})
            b = client.post(f"/v1/videos/{vid}/prompts", json={"frame_idx": 0, "obj_id": 1, **body})
            return a, b

        # labels default to 1 on both routes
        a, b = both({"points": [[10, 20]]})
        assert a.status_code == b.status_code == 200
        # a label the model does not take from users (2 is a box corner) is refused on both
        a, b = both({"points": [[10, 20]], "labels": [2]})
        assert a.status_code == b.status_code == 422
        assert (
            a.json()["error"]["message"]
            == b.json()["error"]["message"]
            == ("labels must be 1 (object) or 0 (background), got [2]")
        )
        a, b = both({"points": [[9000, 20]]})
        assert a.status_code == b.status_code == 422
        assert a.json()["error"]["message"] == "point 9000,20 lies outside the 90x60 image"
        assert b.json()["error"]["message"] == "point 9000,20 lies outside the 96x72 image"
        a, b = both({"points": [[10, 20]], "labels": [1, 0]})
        assert a.json()["error"]["message"] == b.json()["error"]["message"]
        assert "1 points but 2 labels" in a.json()["error"]["message"]
