"""`samkit batch` from the command line: exit codes, one-line errors, kill -9 and Ctrl-C mid-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from samkit.cli import main

from .conftest import make_photos
from .test_local import manifest, results

ROOT = Path(__file__).resolve().parents[2]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def model_args(ckpt):
    return ["--model", "test-tiny", "--checkpoint", str(ckpt), "--device", "cpu", "--quiet"]


AUTO_ARGS = ["--auto", "--points-per-side", "4", "--pred-iou-thresh", "0", "--stability-score-thresh", "0"]


@pytest.mark.slow
def test_batch_cli_writes_results_and_exit_status(capsys, tmp_path, photos, prompt_file, tiny_checkpoint):
    root, keys = photos
    out = tmp_path / "out"
    code, stdout, err = run(
        capsys,
        "batch",
        root,
        "--out",
        out,
        "--prompts",
        prompt_file,
        "--coco",
        out / "coco.json",
        *model_args(tiny_checkpoint),
    )
    assert code == 3  # done, but broken.jpg failed
    assert f"{len(keys)} ok, 1 failed" in stdout and "images/s" in stdout
    assert "1 image(s) failed" in err and "gone/missing.jpg" in err
    assert len(results(out)) == len(keys)
    assert json.loads((out / "coco.json").read_text())["images"]
    (root / "broken.jpg").unlink()
    code, stdout, _ = run(
        capsys, "batch", root, "--out", out, "--prompts", prompt_file, *model_args(tiny_checkpoint)
    )
    assert code == 0 and f"{len(keys)} already done" in stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--auto", "--prompts", "p.jsonl"], None),  # argparse: not allowed together
        (["--auto", "--points-per-side", "0"], "points_per_side must be a positive int"),
        (["--auto", "--pred-iou-thresh", "1.5"], "pred_iou_thresh must be in [0, 1]"),
        (["--auto", "--workers", "0"], "--workers must be >= 1"),
        (["--prompts", "BAD"], ":1: not valid JSON"),
        (["--prompts", "NONE"], "prompt file not found"),
    ],
)
def test_batch_cli_errors_are_one_line(capsys, tmp_path, photos, tiny_checkpoint, args, message):
    root, _ = photos
    (tmp_path / "bad.jsonl").write_text("{oops\n")
    args = [
        str(tmp_path / "bad.jsonl") if a == "BAD" else str(tmp_path / "none.jsonl") if a == "NONE" else a
        for a in args
    ]
    if message is None:
        with pytest.raises(SystemExit) as e:
            main(["batch", str(root), "--out", str(tmp_path / "o"), *args])
        assert e.value.code == 2
        return
    code, _, err = run(capsys, "batch", root, "--out", tmp_path / "o", *args, *model_args(tiny_checkpoint))
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1, err


def test_batch_cli_missing_inputs(capsys, tmp_path, tiny_checkpoint):
    code, _, err = run(
        capsys, "batch", tmp_path / "nope", "--out", tmp_path / "o", "--auto", *model_args(tiny_checkpoint)
    )
    assert code == 1 and "no such file or folder" in err


def _spawn(root, out, ckpt):
    cmd = [
        sys.executable,
        "-m",
        "samkit.cli",
        "batch",
        str(root),
        "--out",
        str(out),
        *AUTO_ARGS,
        "--points-per-side",
        "12",
        *model_args(ckpt),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    # a shell that runs the suite in the background hands its children SIGINT ignored, and Python then
    # installs no KeyboardInterrupt handler: give the child the default disposition, as a terminal would
    return subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _wait_for_lines(proc, out, n, timeout=120.0):
    path = out / "manifest.jsonl"
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if path.exists() and path.read_bytes().count(b"\n") >= n:
            return
        if proc.poll() is not None:
            raise AssertionError(f"batch ended before it could be interrupted: {proc.stderr.read()}")
        time.sleep(0.005)
    raise AssertionError("batch made no progress")


@pytest.fixture(scope="module")
def many_photos(tmp_path_factory, tiny_checkpoint):
    """30 photos and the results of an uninterrupted run over them."""
    tmp = tmp_path_factory.mktemp("many")
    keys = make_photos(tmp / "photos", n=30, corrupt=False)
    clean = tmp / "clean"
    assert (
        main(
            [
                "batch",
                str(tmp / "photos"),
                "--out",
                str(clean),
                *AUTO_ARGS,
                "--points-per-side",
                "12",
                *model_args(tiny_checkpoint),
            ]
        )
        == 0
    )
    return tmp / "photos", keys, clean


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_kill_mid_run_then_rerun_equals_an_uninterrupted_run(tmp_path, tiny_checkpoint, many_photos, sig):
    root, keys, clean = many_photos

    out = tmp_path / "out"
    proc = _spawn(root, out, tiny_checkpoint)
    _wait_for_lines(proc, out, 3)
    proc.send_signal(sig)
    # communicate() returns once every holder of the output pipes is gone: the worker processes too,
    # which leave on their own when their parent was killed with -9
    _, err = proc.communicate(timeout=60)
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "Run the same command again to continue" in err
    else:
        assert proc.returncode == -signal.SIGKILL
    partial = results(out)
    assert 3 <= len(partial) < len(keys)
    for name, data in partial.items():  # every result there is complete, and equal to the clean run's
        assert data == results(clean)[name]

    proc = _spawn(root, out, tiny_checkpoint)
    stdout, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert f"{len(keys) - len(partial)} ok" in stdout or f"{len(partial)} already done" in stdout
    assert results(out) == results(clean)
    ok = [r["image"] for r in manifest(out, torn=0 if sig == signal.SIGINT else None) if r["status"] == "ok"]
    assert sorted(set(ok)) == sorted(keys)
    assert not list(out.rglob("*.tmp"))
