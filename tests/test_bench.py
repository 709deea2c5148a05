"""samkit.cli.bench helpers on the tiny config (timings are not asserted: they belong to benchmarks)."""

from __future__ import annotations

import numpy as np
import pytest

import samkit
from samkit.cli.bench import click_agreement


def test_click_agreement_is_one_for_the_same_path_and_less_for_another(tiny_model, tiny_checkpoint):
    image = np.random.default_rng(0).integers(0, 256, (90, 140, 3), dtype=np.uint8)
    same = click_agreement(
        samkit.ImagePredictor(tiny_model), samkit.ImagePredictor(tiny_model), image, clicks=4
    )
    assert same == {"min_iou": 1.0, "mean_iou": 1.0, "max_score_diff": 0.0}
    # another model (other weights): the masks and scores differ, and the measure says so
    other = samkit.load_model("test-tiny", checkpoint=tiny_checkpoint, device="cpu")
    for p in other.sam_mask_decoder.output_hypernetworks_mlps.parameters():
        p.data.mul_(-1.0)
    diff = click_agreement(samkit.ImagePredictor(tiny_model), samkit.ImagePredictor(other), image, clicks=4)
    assert diff["min_iou"] < 1.0 and diff["max_score_diff"] >= 0.0
    assert 0.0 <= diff["min_iou"] <= diff["mean_iou"] <= 1.0


def _ratios(res, label: str) -> list[str]:
    """The ratio cells of the table line starting with ``label``."""
    line = next(x for x in res.table().splitlines() if x.startswith(label + " "))
    return line[len(label) :].split()


def test_table_compares_video_with_the_fast_path_when_the_reference_tracks_under_autocast():
    from samkit.cli.bench import BenchResult

    rows = {
        "samkit": {"click_ms": 20.0, "video1_s": 4.0},
        "samkit-fast": {"click_ms": 10.0, "video1_s": 1.0},
        "reference": {"click_ms": 40.0, "video1_s": 2.0},
    }
    plain = BenchResult(rows=rows)
    assert _ratios(plain, "speed-up") == ["2.00x", "0.50x"]
    assert _ratios(plain, "fast speed-up") == ["4.00x", "2.00x"]
    autocast = BenchResult(rows=rows, info={"reference_video_autocast": True})
    assert _ratios(autocast, "speed-up") == ["2.00x", "-"]  # fp32 tracking vs a bf16 reference: not shown
    assert _ratios(autocast, "fast speed-up") == ["4.00x", "2.00x"]


def test_table_compares_the_fast_path_with_the_bf16_reference_when_measured():
    from samkit.cli.bench import BenchResult

    rows = {
        "samkit-fast": {"encode_s": 0.01, "video1_s": 0.05},
        "reference": {"encode_s": 0.04},
        "reference-bf16": {"encode_s": 0.02, "video1_s": 0.025},
    }
    res = BenchResult(rows=rows, info={"reference_video_autocast": True})
    assert _ratios(res, "fast speed-up") == ["4.00x", "-"]
    assert _ratios(res, "fast/ref-bf16") == ["2.00x", "0.50x"]
    del rows["reference-bf16"]
    assert not any(line.startswith("fast/ref-bf16") for line in BenchResult(rows=rows).table().splitlines())


@pytest.mark.slow
def test_reference_video_runs_under_autocast_on_the_same_frames():
    """The reference's video predictor (memory stored in bf16) runs on the CPU under the bench's
    autocast, on the JPEG-written frames, and gives a time per tracked frame for each object count."""
    import oracle
    from samkit.cli import bench

    oracle.setup()
    from sam2.build_sam import build_sam2_video_predictor

    model = samkit.load_model(
        "sam2.1-hiera-tiny", checkpoint=oracle.checkpoint("sam2.1-hiera-tiny"), device="cpu"
    )
    pred = build_sam2_video_predictor(
        bench._reference_config(model), None, device="cpu", hydra_overrides_extra=["++model.image_size=256"]
    )
    pred.load_state_dict(model.state_dict(), strict=True)
    out = bench._reference_video(pred, bench._video_frames(120, 160, 2), (1, 2))
    assert set(out) == {"video1_s", "video2_s", "frames_load_s"} and all(0 < v < 60 for v in out.values())


def test_contenders_take_turns_run_by_run():
    from samkit.cli.bench import interleaved_medians

    log = []
    figures = {
        "a": {"x": lambda: log.append("a.x")},
        "b": {"x": lambda: log.append("b.x"), "y": lambda: log.append("b.y")},
    }
    out = interleaved_medians(figures, runs=3)
    # one warm-up each, then timed runs taking turns, the order flipping every run; a figure only one
    # contender has runs alone
    assert log == ["a.x", "b.x"] + ["a.x", "b.x", "b.x", "a.x", "a.x", "b.x"] + ["b.y"] * 4
    assert set(out["a"]) == {"x"} and set(out["b"]) == {"x", "y"}
    assert all(v >= 0 for row in out.values() for v in row.values())


def test_bench_info_has_the_exact_and_fast_models_policies(tiny_model, monkeypatch):
    """The header says how each timed model runs (the timings themselves are stubbed: cheap)."""
    from samkit.cli import bench

    monkeypatch.setattr(bench, "interleaved_medians", lambda figures, runs: {n: {} for n in figures})
    monkeypatch.setattr(bench, "samkit_long_figures", lambda m, image, auto=True: {})
    monkeypatch.setattr(bench, "click_agreement", lambda exact, fast, image: {})
    monkeypatch.setattr(samkit.transforms, "warm_up_compiled", lambda: True)  # no compiling here
    image = np.zeros((32, 48, 3), dtype=np.uint8)
    res = bench.measure(tiny_model, image, runs=1, reference=False, auto=False, compile=True)
    policies = res.info["policy"]
    assert set(policies) == {"samkit", "samkit-fast"}
    assert policies["samkit"] == tiny_model.policy.as_dict()
    assert policies["samkit-fast"]["precision"] == "bf16" and policies["samkit-fast"]["compile"] is True
    header = res.policies().splitlines()
    assert header[0].startswith("samkit policy: device=cpu, precision=fp32, encoder=fp32, compile=False")
    assert header[1].startswith("samkit-fast policy: device=cpu, precision=bf16, encoder=")
    assert "compile=True" in header[1]
