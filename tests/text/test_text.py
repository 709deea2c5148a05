"""samkit.text: phrases, the detectors' boxes against the processors' own post-processing (Grounding
DINO and OWLv2, tiny random models), masks equal to a box prompt, NMS, empty results, errors, and the
continuous-id video tracking with a scripted detector."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import samkit
from samkit.text import Detections, Detector, TextError, TextPredictor, parse_phrases
from samkit.text.video import track_text


@pytest.fixture(scope="module")
def photo():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 60, (90, 140, 3), dtype=np.uint8)
    img[20:70, 30:100] = (220, 40, 40)
    return img


def test_phrases_and_thresholds():
    assert parse_phrases("Truck .  person. truck .") == ["truck", "person"]
    assert parse_phrases("red  square") == ["red square"]
    for bad in ("", " . . ", "."):
        with pytest.raises(TextError, match="empty text prompt"):
            parse_phrases(bad)
    from samkit.text.detector import check_threshold

    with pytest.raises(TextError, match=r"box_threshold must be in \[0, 1\], got 1.5"):
        check_threshold("box_threshold", 1.5)


def _reference_boxes(det: Detector, image, phrases, box_threshold, text_threshold):
    """The processor's own post-processing of the model's output, clipped to the image."""
    proc, model = det.processor, det.model
    pil = Image.fromarray(image)
    h, w = image.shape[:2]
    with torch.no_grad():
        if det.kind == "grounding-dino":
            inputs = proc(images=pil, text=Detector.prompt_text(phrases), return_tensors="pt")
            r = proc.post_process_grounded_object_detection(
                model(**inputs),
                inputs["input_ids"],
                threshold=box_threshold,
                text_threshold=text_threshold,
                target_sizes=[(h, w)],
            )[0]
        else:
            inputs = proc(images=pil, text=[phrases], return_tensors="pt")
            s = max(h, w)
            r = proc.post_process_grounded_object_detection(
                model(**inputs), threshold=box_threshold, target_sizes=[(s, s)], text_labels=[phrases]
            )[0]
    boxes = r["boxes"].numpy().copy()
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, w)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, h)
    ok = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return boxes[ok], r["scores"].numpy()[ok], r, ok


@pytest.mark.parametrize("which", ["dino", "owl"])
def test_boxes_equal_the_processors_post_processing(request, which, photo):
    det = request.getfixturevalue(which)
    phrases = ["truck", "person"]
    threshold = 0.3 if which == "dino" else 0.5
    got = det.detect([photo, photo[:, ::-1].copy()], phrases, threshold, 0.25)
    boxes, scores, raw, ok = _reference_boxes(det, photo, phrases, threshold, 0.25)
    assert len(got[0]) == len(boxes) > 0
    np.testing.assert_allclose(got[0].boxes, boxes, atol=1e-4)
    np.testing.assert_allclose(got[0].scores, scores, atol=1e-6)
    assert set(got[0].labels) <= set(phrases) and got[0].phrases == phrases
    if which == "owl":  # OWL's labels are the phrase indices themselves
        assert [phrases[i] for i in raw["labels"].numpy()[ok]] == got[0].labels
    # batched: the second image is its own
    flipped, *_ = _reference_boxes(det, photo[:, ::-1].copy(), phrases, threshold, 0.25)
    np.testing.assert_allclose(got[1].boxes, flipped, atol=1e-4)


def test_text_too_long_for_the_detector(dino, owl, photo):
    words = ["truck", "person", "dog", "cat", "tree"]
    many = " . ".join(f"{a} {b}" for a in words for b in words)  # 25 distinct phrases, 75 tokens
    with pytest.raises(TextError, match=r"tokens; .* reads at most 32"):
        dino.detect([photo], parse_phrases(many))
    with pytest.raises(TextError, match="reads at most 16 per phrase"):
        owl.detect([photo], ["a very long phrase indeed"])


def test_masks_equal_a_box_prompt_and_nms(tiny_model, dino, photo):
    tp = TextPredictor(tiny_model, detector=dino, box_threshold=0.3)
    r = tp.predict(photo, "truck . person")
    assert len(r) > 1 and r.masks.shape == (len(r), 90, 140)
    pred = samkit.ImagePredictor(tiny_model)
    pred.set_image(photo)
    masks, scores, _ = pred.predict(box=r.boxes, multimask_output=False)
    np.testing.assert_array_equal(r.masks, masks[:, 0] > 0)
    np.testing.assert_allclose(r.mask_scores, scores[:, 0])
    anns = r.annotations()
    assert [a["category"] for a in anns] == r.labels and {a["category_id"] for a in anns} <= {1, 2}
    fewer = tp.predict(photo, "truck . person", nms=0.01)  # these random boxes overlap by at most 0.03
    assert 0 < len(fewer) < len(r)
    assert len(tp.predict(photo, "truck . person", box_threshold=0.0)) >= len(
        r
    )  # 0 is a threshold, not "unset"
    nothing = tp.predict(photo, "truck", box_threshold=1.0)
    assert len(nothing) == 0 and nothing.masks.shape == (0, 90, 140) and nothing.annotations() == []


def test_detector_errors(tmp_path, monkeypatch):
    with pytest.raises(TextError, match="detector folder not found"):
        Detector.load(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TextError, match="is not a detector folder"):
        Detector.load(tmp_path / "empty")
    import samkit.checkpoints as ck

    calls = []
    monkeypatch.setattr(ck, "_hub_unreachable", lambda: calls.append(1) or "cannot reach huggingface.co:443")
    with pytest.raises(TextError, match=r"not in the local cache and could not be downloaded .* --detector"):
        Detector.load("samkit-tests/no-such-detector")
    assert calls == [1]


class Scripted(Detector):
    """A detector whose boxes per frame are given: frame index -> [(box, label)]."""

    def __init__(self, script, frames):
        self.script, self.frames, self.name, self.kind, self.max_tokens = (
            script,
            frames,
            "scripted",
            "scripted",
            99,
        )

    def detect(self, images, phrases, box_threshold=0.35, text_threshold=0.25):
        out = []
        for im in images:
            f = next(i for i, fr in enumerate(self.frames) if np.array_equal(fr, im))
            found = self.script.get(f, [])
            out.append(
                Detections(
                    np.array([b for b, _ in found], np.float32).reshape(-1, 4),
                    np.full(len(found), 0.9, np.float32),
                    [lab for _, lab in found],
                    np.array([phrases.index(lab) for _, lab in found], np.int64),
                    phrases,
                )
            )
        return out


def test_video_keeps_ids_and_numbers_newcomers(tiny_model, tmp_path, monkeypatch):
    import json

    from samkit.video.io import open_video
    from videogen import synthetic_frames

    frames = synthetic_frames(9)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:05d}.jpg", quality=100)
    video = open_video(folder)
    decoded = [video.frame(i) for i in range(len(frames))]
    h, w = decoded[0].shape[:2]
    whole = [0, 0, w - 1, h - 1]
    corner = [0, 0, w // 4, h // 4]
    # frame 0: one dog (the whole frame); frame 4: the same dog again and a cat in a corner
    script = {0: [(whole, "dog")], 4: [(whole, "dog"), (corner, "cat")], 8: [(whole, "dog")]}
    tp = TextPredictor(tiny_model, detector=Scripted(script, decoded))
    vp = samkit.VideoPredictor(tiny_model, progress=False)
    # match_iou 1: no detection is ever a tracked object: frame 0 gives 1, frame 4 gives 2 and 3, frame 8 gives 4
    r = track_text(
        vp, video, tp, "dog . cat", tmp_path / "new", detect_every=4, match_iou=1.0, write_overlay=False
    )
    assert r.obj_ids == [1, 2, 3, 4] and r.labels == ["dog", "dog", "cat", "dog"]
    doc = json.loads(r.annotations.read_text())
    assert doc["masklet_label"] == r.labels and doc["frame_indices"] == list(range(9))
    assert sorted(int(p.name) for p in (tmp_path / "new" / "masks").iterdir()) == [1, 2, 3, 4]
    assert (
        sorted(p.name for p in (tmp_path / "new" / "masks" / "3").iterdir())[0] == "00004.png"
    )  # from frame 4 on
    # every detection overlapping a tracked object keeps its id: only frame 0's dog
    import samkit.text.video as tv

    monkeypatch.setattr(tv, "_iou", lambda a, b: 1.0)
    r = track_text(
        vp, video, tp, "dog . cat", tmp_path / "kept", detect_every=4, match_iou=0.5, write_overlay=False
    )
    assert r.obj_ids == [1] and r.labels == ["dog"]
    # without --detect-every: frame 0 only
    monkeypatch.undo()
    once = track_text(vp, video, tp, "dog . cat", tmp_path / "once", write_overlay=False)
    assert once.labels == ["dog"] and once.frames_done == 9
    with pytest.raises(TextError, match="match_iou must be in"):
        track_text(vp, video, tp, "dog", tmp_path / "x", match_iou=2.0)
    assert tv._iou(np.eye(3, dtype=bool), np.eye(3, dtype=bool)) == 1.0
