"""Dataset inference (``samkit track --dataset``, :mod:`samkit.video.dataset`): Meta's
``tools/vos_inference.py`` behaviour on generated DAVIS- and SA-V-style datasets.

Two videos of 6 frames (128x96): a red square moving right (object 1) and a green disc moving left
(object 2); in ``car`` the disc appears only from frame 2. The parity test drives the reference
``SAM2VideoPredictor`` (built as ``vos_inference`` builds it) the same way and compares the masks.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samkit.cli import main
from samkit.video.dataset import (
    DAVIS_PALETTE,
    DatasetError,
    ModelSource,
    parse_dataset_spec,
    track_dataset,
)

H, W, T = 96, 128, 6
VIDEOS = {"bear": (0, False), "car": (1, True)}  # name: (seed, object 2 appears only from frame 2)
# a palette of our own, so that keeping the input's palette is visible
PALETTE = [0, 0, 0, 255, 0, 255, 0, 255, 255] + [7] * (256 * 3 - 9)


def render(seed: int, late: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    """(frame, labels) per frame: labels uint8, 0 background, 1 square, 2 disc."""
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 70, (H, W, 3)).astype(np.uint8)
    yy, xx = np.mgrid[:H, :W]
    out = []
    for t in range(T):
        frame, labels = background.copy(), np.zeros((H, W), np.uint8)
        x0 = 10 + 4 * t
        square = (yy >= 20) & (yy < 44) & (xx >= x0) & (xx < x0 + 24)
        frame[square], labels[square] = (220, 40, 40), 1
        if not late or t >= 2:
            disc = (yy - 62) ** 2 + (xx - (100 - 3 * t)) ** 2 < 14**2
            frame[disc], labels[disc] = (40, 210, 60), 2
        out.append((frame, labels))
    return out


def write_davis(root: Path) -> tuple[Path, Path]:
    for name, (seed, late) in VIDEOS.items():
        (root / "JPEGImages" / name).mkdir(parents=True)
        (root / "Annotations" / name).mkdir(parents=True)
        for t, (frame, labels) in enumerate(render(seed, late)):
            Image.fromarray(frame).save(root / "JPEGImages" / name / f"{t:05d}.jpg", quality=95)
            png = Image.fromarray(labels)
            png.putpalette(PALETTE)
            png.save(root / "Annotations" / name / f"{t:05d}.png")
    return root / "JPEGImages", root / "Annotations"


def write_sav(root: Path) -> Path:
    """SA-V layout, annotated on every 2nd frame; binary grayscale PNGs (no palette)."""
    for name, (seed, late) in VIDEOS.items():
        (root / "JPEGImages_24fps" / name).mkdir(parents=True)
        for t, (frame, labels) in enumerate(render(seed, late)):
            Image.fromarray(frame).save(root / "JPEGImages_24fps" / name / f"{t:05d}.jpg", quality=95)
            if t % 2:
                continue
            for obj in (1, 2):
                folder = root / "Annotations_6fps" / name / f"{obj:03d}"
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(((labels == obj) * 255).astype(np.uint8)).save(folder / f"{t:05d}.png")
    return root


@pytest.fixture(scope="module")
def davis(tmp_path_factory) -> str:
    frames, anns = write_davis(tmp_path_factory.mktemp("davis"))
    return f"davis:{frames}:{anns}"


@pytest.fixture(scope="module")
def sav(tmp_path_factory) -> str:
    return f"sav:{write_sav(tmp_path_factory.mktemp('sav'))}"


@pytest.fixture()
def davis_copy(tmp_path) -> tuple[Path, Path]:
    return write_davis(tmp_path / "data")


def labels_of(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return (a & b).sum() / max(1, (a | b).sum())


# --- parity with the reference ------------------------------------------------------------------


@pytest.mark.parity
def test_masks_match_the_reference_predictor_driven_the_same_way(davis, tmp_path):
    """The reference SAM2VideoPredictor built as vos_inference builds it (no post-processing,
    non_overlap_masks for palette output), each object added with add_new_mask on its first frame
    (car's disc on frame 2, after propagating frames 0-1), masks = logits > 0."""
    import torch

    import oracle
    import samkit
    from samkit.configs import get_config

    oracle.setup()
    from sam2.build_sam import build_sam2_video_predictor

    variant, size = "sam2.1-hiera-tiny", 256
    ckpt = oracle.checkpoint(variant)
    ref = build_sam2_video_predictor(
        oracle.REFERENCE_CONFIGS[variant],
        str(ckpt),
        device="cpu",
        apply_postprocessing=False,
        hydra_overrides_extra=[f"++model.image_size={size}", "++model.non_overlap_masks=true"],
    )
    model = samkit.load_model(
        dataclasses.replace(get_config(variant), image_size=size),
        checkpoint=ckpt,
        device="cpu",
        apply_postprocessing=False,
    )
    out = tmp_path / "out"
    summary = track_dataset(davis, out, model, progress=False)
    assert (summary.done, summary.objects, summary.frames) == (2, 4, 12)

    frames_root, anns_root = (Path(p) for p in davis.split(":")[1:])
    worst, exact, present = 1.0, 0, []
    for name in VIDEOS:
        gt = [labels_of(anns_root / name / f"{t:05d}.png") for t in range(T)]
        first = {obj: min(t for t in range(T) if (gt[t] == obj).any()) for obj in (1, 2)}
        ref_masks: dict[int, dict[int, np.ndarray]] = {}
        with torch.inference_mode():
            state = ref.init_state(str(frames_root / name))
            starts = sorted(set(first.values()))
            for i, f in enumerate(starts):
                for obj in (o for o in first if first[o] == f):
                    ref.add_new_mask(state, frame_idx=f, obj_id=obj, mask=gt[f] == obj)
                stop = starts[i + 1] - 1 if i + 1 < len(starts) else T - 1
                for t, ids, logits in ref.propagate_in_video(
                    state, start_frame_idx=f, max_frame_num_to_track=stop - f
                ):
                    ref_masks[t] = {o: (logits[j, 0] > 0).numpy() for j, o in enumerate(ids)}
        assert sorted(ref_masks) == list(range(T))
        for t in range(T):
            ours = labels_of(out / name / f"{t:05d}.png")
            for obj in (1, 2):
                r = ref_masks[t].get(obj, np.zeros((H, W), bool))
                if t < first[obj]:
                    assert obj not in ref_masks[t] and not (ours == obj).any()
                agree = ((ours == obj) == r).mean()
                worst = min(worst, agree)
                exact += bool(agree == 1.0)
                present.append(r.any())
                assert agree >= 0.995, f"{name} frame {t} object {obj}: masks agree on {agree:.4%}"
    assert np.mean(present) > 0.7  # not vacuous: the objects are tracked on most frames
    print(f"worst agreement {worst:.5f}; {exact} of {len(present)} masks exactly equal")


# --- behaviour on the test-tiny model ------------------------------------------------------------


def test_palette_output_keeps_the_palette_and_starts_late_objects_late(davis, tmp_path, tiny_model):
    out = tmp_path / "out"
    summary = track_dataset(davis, out, tiny_model, progress=False)
    assert (summary.videos, summary.done, summary.skipped) == (2, 2, 0)
    assert sorted(p.name for p in out.iterdir()) == [".samkit-track.json", "bear", "car"]
    frames_root, anns_root = (Path(p) for p in davis.split(":")[1:])
    for name, (_, late) in VIDEOS.items():
        assert sorted(p.name for p in (out / name).iterdir()) == [f"{t:05d}.png" for t in range(T)]
        for t in range(T):
            im = Image.open(out / name / f"{t:05d}.png")
            assert im.mode == "P" and im.size == (W, H) and im.getpalette()[:9] == PALETTE[:9]
            labels = np.asarray(im)
            assert set(np.unique(labels)) <= {0, 1, 2}
            if late and t < 2:
                assert not (labels == 2).any()
        # on an object's prompt frame the output is its annotated mask
        gt = labels_of(anns_root / name / "00000.png")
        assert iou(labels_of(out / name / "00000.png") == 1, gt == 1) > 0.9
    gt2 = labels_of(anns_root / "car" / "00002.png") == 2
    assert iou(labels_of(out / "car" / "00002.png") == 2, gt2) > 0.9


def test_per_object_pngs_from_sav_input(sav, tmp_path, tiny_model):
    """SA-V input (annotated every 2nd frame, grayscale PNGs): per-object 0/1 PNGs for every frame
    by default, Meta's DAVIS palette since the input has none."""
    out = tmp_path / "out"
    summary = track_dataset(sav, out, tiny_model, progress=False)
    assert (summary.done, summary.objects, summary.frames) == (2, 4, 12)
    for name, (_, late) in VIDEOS.items():
        assert sorted(p.name for p in (out / name).iterdir()) == ["001", "002"]
        for obj in ("001", "002"):
            files = sorted(p.name for p in (out / name / obj).iterdir())
            assert files == [f"{t:05d}.png" for t in range(T)]
            for t in range(T):
                im = Image.open(out / name / obj / f"{t:05d}.png")
                assert im.mode == "P" and im.getpalette()[:12] == DAVIS_PALETTE[:12]
                values = np.asarray(im)
                assert set(np.unique(values)) <= {0, 1}
                if late and obj == "002" and t < 2:
                    assert not values.any()
    # the same dataset as palette PNGs
    summary = track_dataset(sav, tmp_path / "pal", tiny_model, per_object_png=False, progress=False)
    im = Image.open(tmp_path / "pal" / "car" / "00003.png")
    assert im.mode == "P" and im.getpalette() == DAVIS_PALETTE


def test_score_thresh_moves_the_masks(davis, tmp_path, tiny_model):
    def pixels(thresh: float) -> int:
        out = tmp_path / f"t{thresh}"
        track_dataset(
            davis, out, tiny_model, videos=["bear"], per_object_png=True, score_thresh=thresh, progress=False
        )
        assert not (out / "car").exists()
        return sum(int(labels_of(p).sum()) for p in out.rglob("*.png"))

    low, zero, high = pixels(-1000.0), pixels(0.0), pixels(1000.0)
    assert low == 2 * T * H * W  # every pixel of both objects
    assert high == 0
    assert 0 < zero < low


def test_rerun_skips_finished_videos_and_redoes_crashed_ones(davis, tmp_path, tiny_model, monkeypatch):
    import samkit.video.dataset as vd

    out = tmp_path / "out"
    track_dataset(davis, out, tiny_model, progress=False)
    before = {p: p.stat().st_mtime_ns for p in (out / "bear").iterdir()}
    # a crash in the middle of car: half its frames written into a temporary folder
    shutil.rmtree(out / "car")
    crashed = out / ".tmp-car-999-deadbeef"
    crashed.mkdir()
    (crashed / "00000.png").write_bytes(b"half")
    summary = track_dataset(davis, out, tiny_model, progress=False)
    assert (summary.done, summary.skipped) == (1, 1) and [r.name for r in summary.results] == ["car"]
    assert {p: p.stat().st_mtime_ns for p in (out / "bear").iterdir()} == before
    assert not crashed.exists() and len(list((out / "car").iterdir())) == T
    # a failure halfway through a video leaves neither the video's folder nor a temporary one
    shutil.rmtree(out / "car")
    real, calls = vd._save_png, []

    def failing(*args):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        real(*args)

    monkeypatch.setattr(vd, "_save_png", failing)
    with pytest.raises(OSError, match="disk full"):
        track_dataset(davis, out, tiny_model, progress=False)
    assert sorted(p.name for p in out.iterdir()) == [".samkit-track.json", "bear"]
    # other settings in the same folder are refused
    with pytest.raises(DatasetError, match="differs in: score_thresh"):
        track_dataset(davis, out, tiny_model, score_thresh=0.5, progress=False)


def _edit(frames: Path, anns: Path, case: str, tmp_path: Path) -> str:
    spec = f"davis:{frames}:{anns}"
    if case == "no annotation folder":
        shutil.rmtree(anns / "car")
    elif case == "size":
        Image.fromarray(np.zeros((48, 64), np.uint8)).save(anns / "car" / "00003.png")
    elif case == "unreadable":
        (anns / "car" / "00001.png").write_bytes(b"\x89PNG not really")
    elif case == "no object":
        for p in (anns / "car").iterdir():
            Image.fromarray(np.zeros((H, W), np.uint8)).save(p)
    elif case == "stray annotation":
        shutil.copy(anns / "car" / "00001.png", anns / "car" / "00042.png")
    elif case == "empty":
        empty = tmp_path / "empty"
        empty.mkdir()
        spec = f"davis:{empty}:{anns}"
    elif case == "no frames":
        for p in (frames / "car").iterdir():
            p.unlink()
    return spec


@pytest.mark.parametrize(
    "case, fragment",
    [
        ("no annotation folder", "video car has frames but no annotation folder: {anns}/car not found"),
        ("size", "annotation {anns}/car/00003.png is 64x48 but the frames of video car are 128x96"),
        ("unreadable", "cannot read mask {anns}/car/00001.png"),
        ("no object", "video car: no object appears in any of its annotations"),
        ("stray annotation", "annotation {anns}/car/00042.png has no frame"),
        ("empty", "no videos (sub-folders of frames) in"),
        ("no frames", "video car: no frames (JPEG images) in {frames}/car"),
    ],
)
def test_dataset_errors_name_the_problem(case, fragment, davis_copy, tmp_path, tiny_model):
    frames, anns = davis_copy
    spec = _edit(frames, anns, case, tmp_path)
    with pytest.raises(DatasetError) as e:
        track_dataset(spec, tmp_path / "out", tiny_model, progress=False)
    assert fragment.format(anns=anns, frames=frames) in str(e.value)
    if case in ("no annotation folder", "no frames"):  # found before any video is tracked
        assert not (tmp_path / "out" / "bear").exists()


def test_spec_errors(tmp_path):
    (tmp_path / "sav").mkdir()
    for spec, fragment in [
        ("coco:a.json:images", "bad dataset spec 'coco:a.json:images': expected davis:FRAMES_ROOT"),
        (f"davis:{tmp_path}", "davis needs davis:FRAMES_ROOT:ANNOTATIONS_ROOT"),
        (f"davis:{tmp_path / 'nope'}:{tmp_path}", f"davis: frames folder not found: {tmp_path / 'nope'}"),
        (
            f"davis:{tmp_path}:{tmp_path / 'gone'}",
            f"davis: annotations folder not found: {tmp_path / 'gone'}",
        ),
        (f"sav:{tmp_path / 'sav'}", f"frames folder not found: {tmp_path / 'sav' / 'JPEGImages_24fps'}"),
        (f"sav:{tmp_path / 'x'}", f"sav: folder not found: {tmp_path / 'x'}"),
    ]:
        with pytest.raises(DatasetError) as e:
            parse_dataset_spec(spec)
        assert fragment in str(e.value), spec
    ds = parse_dataset_spec(f"davis:{tmp_path}:{tmp_path}")
    with pytest.raises(DatasetError, match="no frame folder for video"):
        ds.video_names(["ghost"])


# --- the command line ----------------------------------------------------------------------------


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_dataset_both_layouts(capsys, tmp_path, davis, sav, tiny_checkpoint):
    model = ["--model", "test-tiny", "--checkpoint", tiny_checkpoint, "--device", "cpu", "--quiet"]
    code, out, err = _cli(capsys, "track", "--dataset", davis, "--out", tmp_path / "d", *model)
    assert code == 0, err
    assert "tracked 2 video(s), 0 already done, of 2: 4 objects, 12 frames" in out
    assert (tmp_path / "d" / "car" / "00005.png").is_file()
    code, out, err = _cli(capsys, "track", "--dataset", davis, "--out", tmp_path / "d", *model)
    assert code == 0 and "tracked 0 video(s), 2 already done, of 2: 0 objects" in out, err
    code, out, err = _cli(
        capsys,
        "track",
        "--dataset",
        sav,
        "--out",
        tmp_path / "s",
        "--videos",
        "car",
        "--score-thresh",
        "0.5",
        *model,
    )
    assert code == 0 and "tracked 1 video(s), 0 already done, of 1" in out, err
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [".samkit-track.json", "car"]
    assert len(list((tmp_path / "s" / "car" / "002").iterdir())) == T
    code, out, err = _cli(
        capsys,
        "track",
        "--dataset",
        davis,
        "--out",
        tmp_path / "p",
        "--per-object-png",
        "--videos",
        "bear",
        *model,
    )
    assert code == 0 and (tmp_path / "p" / "bear" / "001" / "00004.png").is_file(), err


def test_cli_dataset_mistakes_are_one_line(capsys, tmp_path, davis, tiny_checkpoint):
    model = ["--model", "test-tiny", "--checkpoint", tiny_checkpoint, "--quiet"]
    out = ["--out", tmp_path / "o"]
    for argv, fragment in [
        (["track", *out], "give a video (file or folder of frames) or --dataset SPEC"),
        (["track", tmp_path, "--dataset", davis, *out], "either a video or --dataset SPEC, not both"),
        (
            ["track", "--dataset", davis, "--prompt", "0:1:5,5", *out],
            "--prompt cannot be used with --dataset",
        ),
        (
            ["track", tmp_path, "--prompt", "0:1:5,5", "--videos", "a", *out],
            "--videos applies only with --dataset",
        ),
        (["track", "--dataset", "coco:x:y", *out], "bad dataset spec"),
        (["track", "--dataset", davis, "--videos", "ghost", *out], "no frame folder for video(s) ghost"),
        (["track", "--dataset", davis, "--no-overlay", *out], "--no-overlay does not apply to --dataset"),
    ]:
        code, _, err = _cli(capsys, *argv, *model)
        assert code == 1 and fragment in err and len(err.strip().splitlines()) == 1, (argv, err)


def test_python_api_needs_a_model_source_for_ray(davis, tmp_path, tiny_model):
    with pytest.raises(TypeError, match="pass a ModelSource"):
        track_dataset(davis, tmp_path / "o", tiny_model, engine="ray", progress=False)


@pytest.mark.slow
def test_cli_dataset_on_ray_writes_what_the_local_engine_writes(capsys, tmp_path, davis, tiny_checkpoint):
    ray = pytest.importorskip("ray")
    model = ["--model", "test-tiny", "--checkpoint", tiny_checkpoint, "--device", "cpu", "--quiet"]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        code, out, err = _cli(
            capsys,
            "track",
            "--dataset",
            davis,
            "--out",
            tmp_path / "ray",
            "--engine",
            "ray",
            "--concurrency",
            "2",
            *model,
        )
    finally:
        ray.shutdown()
    assert code == 0 and "tracked 2 video(s), 0 already done, of 2: 4 objects, 12 frames" in out, err
    track_dataset(
        davis, tmp_path / "local", ModelSource("test-tiny", str(tiny_checkpoint), "cpu"), progress=False
    )
    for p in (tmp_path / "local").rglob("*.png"):
        # Ray's workers run torch on 1 thread here: the logits differ in the last bits
        local, remote = labels_of(p), labels_of(tmp_path / "ray" / p.relative_to(tmp_path / "local"))
        assert (local == remote).mean() > 0.995, p
    assert not [p for p in (tmp_path / "ray").iterdir() if p.name.startswith(".tmp-")]
    assert os.listdir(tmp_path / "ray") and len(list((tmp_path / "ray").rglob("*.png"))) == 2 * T
