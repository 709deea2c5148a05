"""Loading checkpoints: strict keys, clear errors, the Hugging Face cache and offline behaviour."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import samkit
from conftest import ROOT, random_tiny_state_dict
from samkit.checkpoints import CheckpointError, DownloadError, load_state_dict_file


def test_load_official_layout_strict(tiny_checkpoint):
    model = samkit.load_model("test-tiny", checkpoint=tiny_checkpoint, device="cpu")
    sd = torch.load(tiny_checkpoint, weights_only=True)["model"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, sd[k]), k
    assert not model.training
    assert model.device.type == "cpu"


def test_bare_and_ddp_state_dicts_load(tmp_path):
    sd = random_tiny_state_dict(1)
    torch.save(sd, tmp_path / "bare.pt")
    torch.save({"model": {f"module.{k}": v for k, v in sd.items()}}, tmp_path / "ddp.pt")
    a = samkit.load_model("test-tiny", checkpoint=tmp_path / "bare.pt", device="cpu")
    b = samkit.load_model("test-tiny", checkpoint=tmp_path / "ddp.pt", device="cpu")
    for (k, v), (_, w) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(v, w), k


def test_missing_file():
    with pytest.raises(CheckpointError, match="not found"):
        samkit.load_model("test-tiny", checkpoint="/nonexistent/sam2.1_hiera_tiny.pt", device="cpu")


def test_corrupt_and_truncated_files(tmp_path, tiny_checkpoint):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="corrupt, truncated"):
        samkit.load_model("test-tiny", checkpoint=junk, device="cpu")
    data = tiny_checkpoint.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt, truncated"):
        samkit.load_model("test-tiny", checkpoint=cut, device="cpu")
    wrong = tmp_path / "list.pt"
    torch.save([1, 2, 3], wrong)
    with pytest.raises(CheckpointError, match="state dict"):
        load_state_dict_file(wrong)


def test_missing_and_unexpected_keys_are_named(tmp_path):
    sd = random_tiny_state_dict(2)
    sd.pop("no_mem_embed")
    sd["extra.weight"] = torch.zeros(3)
    path = tmp_path / "edited.pt"
    torch.save({"model": sd}, path)
    with pytest.raises(CheckpointError) as e:
        samkit.load_model("test-tiny", checkpoint=path, device="cpu")
    msg = str(e.value)
    assert "missing keys (1): no_mem_embed" in msg
    assert "unexpected keys (1): extra.weight" in msg


@pytest.mark.parity
def test_checkpoint_of_another_variant_is_named(oracle_checkpoint):
    """A SAM 2 checkpoint loaded as SAM 2.1: the error names the variant it is and the keys."""
    ckpt = oracle_checkpoint("sam2-hiera-tiny")
    with pytest.raises(CheckpointError) as e:
        samkit.load_model("sam2.1-hiera-tiny", checkpoint=ckpt, device="cpu")
    msg = str(e.value)
    assert "is a 'sam2-hiera-tiny' checkpoint, not 'sam2.1-hiera-tiny'" in msg
    assert "load_model('sam2-hiera-tiny', checkpoint=...)" in e.value.summary  # Python advice in Python
    assert e.value.variant == "sam2-hiera-tiny"
    assert "no_obj_embed_spatial" in msg and "obj_ptr_tpos_proj.weight" in msg
    ckpt_small = oracle_checkpoint("sam2.1-hiera-small")
    with pytest.raises(CheckpointError, match="sam2.1-hiera-small"):
        samkit.load_model("sam2.1-hiera-tiny", checkpoint=ckpt_small, device="cpu")


def test_unknown_model_name():
    with pytest.raises(ValueError, match="valid names"):
        samkit.load_model("sam2.1-hiera-gigantic", checkpoint="x.pt")


def test_unavailable_device(tiny_checkpoint):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")  # pragma: no cover
    with pytest.raises(ValueError, match="CUDA is not available"):
        samkit.load_model("test-tiny", checkpoint=tiny_checkpoint, device="cuda")
    with pytest.raises(ValueError, match="unknown device"):
        samkit.load_model("test-tiny", checkpoint=tiny_checkpoint, device="tpu7")


def _run_isolated(code: str, env_extra: dict) -> subprocess.CompletedProcess:
    """Run code in a fresh interpreter, since huggingface_hub reads its settings at import."""
    env = {**os.environ, **env_extra}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_offline_without_cache_says_how_to_pass_checkpoint(tmp_path):
    res = _run_isolated(
        """
        import samkit
        try:
            samkit.load_model("sam2.1-hiera-tiny", device="cpu")
        except samkit.DownloadError as e:
            print("DOWNLOAD-ERROR", e)
        """,
        {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")},
    )
    assert "DOWNLOAD-ERROR" in res.stdout, res.stderr
    assert "checkpoint=" in res.stdout and "sam2.1_hiera_tiny.pt" in res.stdout


def test_unreachable_hub_is_reported_after_one_attempt(tmp_path):
    """With the hub pointed at an address where nothing listens: one connection attempt, no
    huggingface_hub download (its retries take tens of seconds), and a one-line CLI error that says
    which flag to use, with no Python advice; the Python error keeps the Python advice."""
    res = _run_isolated(
        """
        import socket, huggingface_hub
        attempts, downloads = [], []
        real = socket.create_connection
        socket.create_connection = lambda *a, **k: attempts.append(a[0]) or real(*a, **k)
        huggingface_hub.hf_hub_download = lambda *a, **k: downloads.append(a)
        import samkit
        from samkit.cli import main
        try:
            samkit.load_model("sam2.1-hiera-tiny", device="cpu")
        except samkit.DownloadError as e:
            print("PYTHON", e)
        code = main(["segment", "examples/shapes.jpg", "--point", "190,190", "--out", "m.png"])
        print("CODE", code, "ATTEMPTS", len(attempts), "DOWNLOADS", len(downloads))
        """,
        {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf")},
    )
    assert "CODE 1 ATTEMPTS 2 DOWNLOADS 0" in res.stdout, res.stdout + res.stderr  # one per call
    python = next(line for line in res.stdout.splitlines() if line.startswith("PYTHON"))
    assert "cannot reach 127.0.0.1:9" in python and "load_model('sam2.1-hiera-tiny', checkpoint=" in python
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and "load_model" not in err[0], res.stderr
    assert (
        "--checkpoint path/to/sam2.1_hiera_tiny.pt" in err[0]
        and "samkit download sam2.1-hiera-tiny" in err[0]
    )


@pytest.mark.slow
def test_download_is_reused_from_the_hub_cache(tmp_path, oracle_checkpoint):
    """A file already in the standard Hugging Face cache is used without any network access."""
    ckpt = oracle_checkpoint("sam2.1-hiera-tiny")
    snap = tmp_path / "hub" / "models--facebook--sam2.1-hiera-tiny" / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    (snap / "sam2.1_hiera_tiny.pt").symlink_to(ckpt)
    refs = tmp_path / "hub" / "models--facebook--sam2.1-hiera-tiny" / "refs"
    refs.mkdir()
    (refs / "main").write_text("0" * 40)
    res = _run_isolated(
        """
        import json, samkit, samkit.cli
        m = samkit.load_model("facebook/sam2.1-hiera-tiny", device="cpu")
        print("LOADED", m.cfg.name)
        samkit.cli.main(["models", "--json"])
        """,
        {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HOME": str(tmp_path / "hf")},
    )
    assert "LOADED sam2.1-hiera-tiny" in res.stdout, res.stderr
    assert '"cached": "' in res.stdout  # `samkit models` reports it


def test_download_error_for_test_config():
    with pytest.raises(DownloadError, match="no official weights"):
        samkit.download_checkpoint("test-tiny")


@pytest.mark.parametrize("cls", [samkit.ImagePredictor, samkit.VideoPredictor, samkit.AutomaticMaskGenerator])
def test_predictors_from_pretrained(cls, tiny_checkpoint):
    p = cls.from_pretrained("test-tiny", checkpoint=tiny_checkpoint, device="cpu")
    assert p.model.cfg.name == "test-tiny" and p.device.type == "cpu" and p.image_size == 128


@pytest.mark.parity
def test_cli_names_the_checkpoints_variant_in_one_short_line(
    oracle_checkpoint, tmp_path, capsys, monkeypatch
):
    """A checkpoint of another variant: one short line with command-line advice (the keys only with
    --verbose); without --model the checkpoint's own variant is used, with a note."""
    from PIL import Image

    from samkit.cli import main

    ckpt = oracle_checkpoint("sam2-hiera-tiny")
    img = tmp_path / "p.png"
    Image.fromarray(np.full((40, 60, 3), 90, np.uint8)).save(img)
    argv = [
        "segment",
        str(img),
        "--point",
        "10,10",
        "--out",
        str(tmp_path / "m.png"),
        "--checkpoint",
        str(ckpt),
    ]
    assert main([*argv, "--model", "sam2.1-hiera-tiny"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "is a 'sam2-hiera-tiny' checkpoint, not 'sam2.1-hiera-tiny': use --model sam2-hiera-tiny" in err
    assert len(err) < 250 and "load_model" not in err and "missing keys" not in err
    assert main([*argv, "--model", "sam2.1-hiera-tiny", "--verbose"]) == 1
    assert "missing keys" in capsys.readouterr().err
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "is a sam2-hiera-tiny checkpoint: using --model sam2-hiera-tiny" in err
    assert "loading" not in err  # not a terminal: no progress line
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(argv) == 0
    assert f"samkit: loading sam2-hiera-tiny from {ckpt}..." in capsys.readouterr().err
