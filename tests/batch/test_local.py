"""End-to-end batch jobs on the local engine: results, manifest, COCO file, determinism, resuming."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from samkit import rle
from samkit.batch import BatchInterrupted, BatchSettings, OutputError, run_batch
from samkit.batch.job import Segmenter
from samkit.predictors import AutomaticMaskGenerator, ImagePredictor
from samkit.transforms import load_image

from .conftest import AUTO, write_prompts


def settings(ckpt, mode="prompts", **kw) -> BatchSettings:
    return BatchSettings(
        model="test-tiny",
        checkpoint=str(ckpt),
        device="cpu",
        mode=mode,
        auto=AUTO if mode == "auto" else {},
        **kw,
    )


def manifest(out, torn: int | None = 0) -> list[dict]:
    """The manifest's records; exactly ``torn`` lines may be torn (cut off by a kill; None: any)."""
    records, bad = [], 0
    for line in (Path(out) / "manifest.jsonl").read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            bad += 1
    assert torn is None or bad == torn
    return records


def results(out) -> dict[str, bytes]:
    root = Path(out) / "results"
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.json"))}


def test_prompted_job_matches_the_predictor_one_by_one(
    tmp_path, photos, prompt_file, tiny_model, tiny_checkpoint
):
    from pycocotools.coco import COCO

    root, keys = photos
    out, notes = tmp_path / "out", []
    summary = run_batch(
        root,
        out,
        settings(tiny_checkpoint),
        prompts=prompt_file,
        model=tiny_model,
        progress=False,
        coco=out / "coco.json",
        log=notes.append,
    )
    assert (summary.ok, summary.failed, summary.skipped, summary.images) == (len(keys), 1, 0, len(keys) + 1)
    assert summary.unmatched_prompts == ["gone/missing.jpg"]
    assert any("gone/missing.jpg" in n and "not among the inputs" in n for n in notes)

    lines = {r["image"]: r for r in manifest(out)}
    assert set(lines) == set(keys) | {"broken.jpg"}
    assert lines["broken.jpg"]["status"] == "failed" and "cannot decode image" in lines["broken.jpg"]["error"]
    assert "result" not in lines["broken.jpg"]

    from samkit.batch import load_prompts

    prompts = load_prompts(prompt_file)
    predictor = ImagePredictor(tiny_model)
    coco = COCO(str(out / "coco.json"))
    assert sorted(img["file_name"] for img in coco.dataset["images"]) == sorted(keys)
    for key in keys:
        rec = lines[key]
        assert rec["status"] == "ok" and rec["error"] is None and rec["seconds"] >= 0
        doc = json.loads((out / rec["result"]).read_text())
        assert rec["masks"] == len(doc["annotations"]) == len(prompts[key])
        image = load_image(root / key)
        assert (doc["height"], doc["width"]) == image.shape[:2] and doc["image"] == key
        predictor.set_image(image)
        for j, (p, ann) in enumerate(zip(prompts[key], doc["annotations"])):
            masks, scores, _ = predictor.predict(
                point_coords=p.point_coords,
                point_labels=p.point_labels,
                box=p.box,
                multimask_output=p.multimask,
            )
            best = int(np.argmax(scores))
            mask = rle.decode(ann["segmentation"])
            assert ann["prompt_index"] == j
            assert np.array_equal(mask, masks[best] > 0), (key, j)
            assert ann["predicted_iou"] == pytest.approx(float(scores[best]), abs=1e-5)
            assert ann["area"] == int(mask.sum())
        img_id = next(i["id"] for i in coco.dataset["images"] if i["file_name"] == key)
        coco_masks = [coco.annToMask(a) for a in coco.loadAnns(coco.getAnnIds(imgIds=[img_id]))]
        assert [m.sum() for m in coco_masks] == [a["area"] for a in doc["annotations"]]


def test_auto_job_matches_the_generator_and_writes_pngs(tmp_path, photos, tiny_model, tiny_checkpoint):
    root, keys = photos
    out = tmp_path / "out"
    s = settings(tiny_checkpoint, "auto", png=True, overlay=True)
    summary = run_batch(root, out, s, model=tiny_model, progress=False)
    assert summary.ok == len(keys) and summary.failed == 1 and summary.masks > 0
    gen = AutomaticMaskGenerator(tiny_model, output_mode="coco_rle", **AUTO)
    for key in keys:
        image = load_image(root / key)
        expected = gen.generate(image)
        doc = json.loads((out / "results" / f"{key}.json").read_text())
        assert [a["segmentation"] for a in doc["annotations"]] == [a["segmentation"] for a in expected]
        assert [a["bbox"] for a in doc["annotations"]] == [a["bbox"] for a in expected]
        pngs = sorted((out / "masks" / key).glob("*.png"), key=lambda p: int(p.stem))
        assert len(pngs) == len(expected)
        for png, a in zip(pngs, doc["annotations"]):
            assert np.array_equal(load_image(png)[:, :, 0] > 0, rle.decode(a["segmentation"]))
        overlay = load_image(out / "overlays" / f"{key}.png")
        assert overlay.shape == image.shape and not np.array_equal(overlay, image)


@pytest.mark.slow
def test_same_inputs_give_byte_identical_results(tmp_path, photos, prompt_file, tiny_model, tiny_checkpoint):
    root, _ = photos
    a, b = tmp_path / "a", tmp_path / "b"
    run_batch(
        root,
        a,
        settings(tiny_checkpoint),
        prompts=prompt_file,
        model=tiny_model,
        progress=False,
        coco=a / "coco.json",
        workers=1,
    )
    # another batch size, more reader threads, the model loaded by the job itself
    run_batch(
        root,
        b,
        settings(tiny_checkpoint, batch_size=3),
        prompts=prompt_file,
        progress=False,
        coco=b / "coco.json",
        workers=3,
        processes=1,
    )
    # two worker processes with a model and one torch thread each
    c = tmp_path / "c"
    run_batch(
        root,
        c,
        settings(tiny_checkpoint),
        prompts=prompt_file,
        progress=False,
        coco=c / "coco.json",
        processes=2,
    )
    assert results(a) == results(b) == results(c) and len(results(a)) == 6
    assert (a / "coco.json").read_bytes() == (b / "coco.json").read_bytes() == (c / "coco.json").read_bytes()


def test_rerun_skips_done_images_and_retries_failed_ones(tmp_path, photos, tiny_model, tiny_checkpoint):
    root, keys = photos
    out = tmp_path / "out"
    run_batch(root, out, settings(tiny_checkpoint, "auto"), model=tiny_model, progress=False)
    before = {p: p.stat().st_mtime_ns for p in (out / "results").rglob("*.json")}
    summary = run_batch(root, out, settings(tiny_checkpoint, "auto"), model=tiny_model, progress=False)
    assert (summary.skipped, summary.todo, summary.failed) == (len(keys), 1, 1)  # only broken.jpg again
    assert {p: p.stat().st_mtime_ns for p in (out / "results").rglob("*.json")} == before
    assert [r["image"] for r in manifest(out)].count("broken.jpg") == 2


def test_leftovers_of_a_crash_are_repaired(tmp_path, photos, tiny_model, tiny_checkpoint):
    root, keys = photos
    out, clean = tmp_path / "out", tmp_path / "clean"
    s = settings(tiny_checkpoint, "auto")
    run_batch(root, clean, s, model=tiny_model, progress=False)
    run_batch(root, out, s, model=tiny_model, progress=False)
    # what a kill can leave: a temp file, a torn last manifest line, a result whose line never came
    (out / "results" / ".p0.jpg.json.123.456.tmp").write_text('{"half": ')
    (out / "results" / "p2.jpg.json").unlink()
    with open(out / "manifest.jsonl", "a") as f:
        f.write('{"image": "p3.jpg", "sta')
    summary = run_batch(root, out, s, model=tiny_model, progress=False)
    assert summary.todo == 2  # p2 (its result is gone) and broken.jpg
    assert not list(out.rglob("*.tmp"))
    assert results(out) == results(clean)
    # the torn line stays as it was; later records start on a line of their own
    assert [r["image"] for r in manifest(out, torn=1)][-2:] in (
        ["p2.jpg", "broken.jpg"],
        ["broken.jpg", "p2.jpg"],
    )


def test_ctrl_c_keeps_finished_results_and_a_rerun_completes(
    tmp_path, photos, tiny_model, tiny_checkpoint, monkeypatch
):
    root, keys = photos
    s = settings(tiny_checkpoint, "auto")
    run_batch(root, tmp_path / "clean", s, model=tiny_model, progress=False)

    real, calls = Segmenter.segment, []

    def interrupted(self, items):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, items)

    monkeypatch.setattr(Segmenter, "segment", interrupted)
    out = tmp_path / "out"
    with pytest.raises(BatchInterrupted) as e:
        run_batch(root, out, s, model=tiny_model, progress=False)
    assert e.value.summary.interrupted and e.value.summary.ok == 2
    assert len(results(out)) == 2 and sum(r["status"] == "ok" for r in manifest(out)) == 2
    monkeypatch.setattr(Segmenter, "segment", real)
    summary = run_batch(root, out, s, model=tiny_model, progress=False)
    assert summary.skipped == 2 and summary.ok == len(keys) - 2
    assert results(out) == results(tmp_path / "clean")


def test_a_folder_of_another_job_is_refused(tmp_path, photos, prompt_file, tiny_model, tiny_checkpoint):
    root, keys = photos
    out = tmp_path / "out"
    run_batch(root, out, settings(tiny_checkpoint, "auto"), model=tiny_model, progress=False)
    with pytest.raises(OutputError, match="differs in: auto, mode"):
        run_batch(root, out, settings(tiny_checkpoint), prompts=prompt_file, model=tiny_model, progress=False)
    summary = run_batch(
        root,
        out,
        settings(tiny_checkpoint),
        prompts=prompt_file,
        model=tiny_model,
        progress=False,
        overwrite=True,
    )
    assert summary.skipped == 0 and summary.ok == len(keys)
    assert len(manifest(out)) == len(keys) + 1  # the old job's manifest went with --overwrite
    assert json.loads((out / "results" / "p0.jpg.json").read_text())["mode"] == "prompts"


def test_images_without_prompts_are_recorded(tmp_path, photos, tiny_model, tiny_checkpoint):
    root, keys = photos
    pf = tmp_path / "few.jsonl"
    write_prompts(pf, keys[:2])
    summary = run_batch(
        root, tmp_path / "out", settings(tiny_checkpoint), prompts=pf, model=tiny_model, progress=False
    )
    assert summary.ok == 2 and summary.no_prompts == len(keys) - 2 + 1
    failed = {r["image"]: r["error"] for r in manifest(tmp_path / "out") if r["status"] == "failed"}
    assert set(failed) == set(keys[2:]) | {"broken.jpg"}
    assert all("no prompts" in e for e in failed.values())


def test_bad_job_arguments(tmp_path, photos, prompt_file, tiny_checkpoint):
    root, _ = photos
    with pytest.raises(ValueError, match="needs a prompt file"):
        run_batch(root, tmp_path / "o", settings(tiny_checkpoint), progress=False)
    with pytest.raises(ValueError, match="not both"):
        run_batch(
            root, tmp_path / "o", settings(tiny_checkpoint, "auto"), prompts=prompt_file, progress=False
        )
    with pytest.raises(ValueError, match="engine must be"):
        run_batch(root, tmp_path / "o", settings(tiny_checkpoint, "auto"), engine="spark", progress=False)
    with pytest.raises(ValueError, match="unknown automatic-mask"):
        BatchSettings(mode="auto", auto={"points_per_sid": 3})
    assert not os.path.exists(tmp_path / "o")


def test_an_output_folder_inside_the_inputs_is_not_read_back(tmp_path, photos, tiny_model, tiny_checkpoint):
    root, keys = photos
    out = root / "results"
    s = settings(tiny_checkpoint, "auto", png=True, overlay=True)
    first = run_batch(root, out, s, model=tiny_model, progress=False)
    assert first.images == len(keys) + 1 and list((out / "overlays").rglob("*.png"))
    again = run_batch(root, out, s, model=tiny_model, progress=False)
    assert again.images == len(keys) + 1 and again.skipped == len(keys)


def test_prompted_overlay_shows_the_clicks_and_boxes(
    tmp_path, photos, prompt_file, tiny_model, tiny_checkpoint
):
    root, keys = photos
    out = tmp_path / "out"
    run_batch(
        root,
        out,
        settings(tiny_checkpoint, overlay=True),
        prompts=prompt_file,
        model=tiny_model,
        progress=False,
    )
    overlay = load_image(out / "overlays" / f"{keys[0]}.png")
    # keys[0]: a positive click at (40, 30), a box (10, 10)-(90, 70) and a negative click at (20, 20)
    assert tuple(overlay[30, 40]) == (0, 220, 0)
    assert tuple(overlay[20, 20]) == (230, 0, 0)
    assert tuple(overlay[10, 75]) == (255, 255, 0)
