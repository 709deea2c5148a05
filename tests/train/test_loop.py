"""fit(): resuming after kill -9 ends with the weights of an uninterrupted run; two processes under
torchrun give the weights of one process with the same global batch; validation, LoRA, freezing and
the files a run leaves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import samkit
from samkit.train import OptimSettings, PromptSimulation, TrainSettings, fit
from samkit.train.synthetic import Shapes

ROOT = Path(__file__).resolve().parents[2]


def tiny(tiny_checkpoint):
    return samkit.load_model("test-tiny", checkpoint=tiny_checkpoint, device="cpu")


def settings(**kw) -> TrainSettings:
    base = dict(
        epochs=2,
        optim=OptimSettings(lr=1e-4, encoder_lr=5e-5),
        precision="fp32",
        progress=False,
        save_every=2,
    )
    return TrainSettings(**{**base, **kw})


def data():
    # images (batch 2) and 3-frame clips (batch 1) mixed: 2 + 3 = 5 steps per epoch
    return [(Shapes(4, source_size=128), 2), (Shapes(3, num_frames=3, source_size=128), 1)]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


SCRIPT = """
import os, signal, sys
sys.path.insert(0, {tests!r})
import torch
import samkit
from test_loop import data, settings
from samkit.train import fit
torch.set_num_threads({threads})  # the test's: other reductions would round differently
model = samkit.load_model("test-tiny", checkpoint={ckpt!r}, device="cpu")

def crash(step, record):
    if step == {crash_at}:
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no final save: like a machine going down

fit(model, data(), settings(), out={out!r}, on_step=crash)
"""


def test_resume_after_kill_equals_an_uninterrupted_run(tiny_checkpoint, tmp_path):
    # uninterrupted (dropout and drop path on: the random streams must be restored too)
    full = fit(tiny(tiny_checkpoint), data(), settings(), out=tmp_path / "full")
    assert full.steps == 10 and full.resumed_from == 0
    # killed at step 7: the last save was after step 6 (save_every=2), mid-epoch (5 steps per epoch)
    script = SCRIPT.format(
        tests=str(ROOT / "tests" / "train"),
        ckpt=str(tiny_checkpoint),
        crash_at=7,
        out=str(tmp_path / "run"),
        threads=torch.get_num_threads(),
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
    resumed = fit(tiny(tiny_checkpoint), data(), settings(), out=tmp_path / "run")
    assert resumed.resumed_from == 6 and resumed.steps == 10
    a, b = weights(full.checkpoint), weights(resumed.checkpoint)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-6, msg=k)
    # the metrics of the redone step 7 are not doubled
    steps = [
        r["step"] for r in map(json.loads, (tmp_path / "run" / "metrics.jsonl").read_text().splitlines())
    ]
    assert steps == list(range(1, 11))
    # a finished run is not trained again; other settings in the same folder are refused
    again = fit(tiny(tiny_checkpoint), data(), settings(), out=tmp_path / "run")
    assert again.resumed_from == 10 and again.steps == 10
    with pytest.raises(ValueError, match="other settings"):
        fit(tiny(tiny_checkpoint), data(), settings(seed=5), out=tmp_path / "run")


DDP_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
import samkit
from test_loop import ddp_data, ddp_settings
from samkit.train import fit
model = samkit.load_model("test-tiny", checkpoint={ckpt!r}, device="cpu")
fit(model, ddp_data({batch}), ddp_settings(), out={out!r})
"""


def ddp_data(batch_size):
    return [(Shapes(4, num_frames=3, source_size=128), batch_size)]


def ddp_settings():
    # mask prompts and no dropout: then nothing random differs between one process and two (clicks
    # would draw their noise per process)
    return settings(
        epochs=1,
        dropout=0.0,
        drop_path=0.0,
        prompts=PromptSimulation(prob_points=0.0, num_init_cond_frames=2, num_frames_to_correct=2),
    )


def test_two_processes_equal_one_with_the_same_global_batch(tiny_checkpoint, tmp_path):
    outs = {}
    for procs, batch in ((1, 2), (2, 1)):
        out = tmp_path / f"p{procs}"
        script = tmp_path / f"ddp{procs}.py"
        script.write_text(
            DDP_SCRIPT.format(
                tests=str(ROOT / "tests" / "train"), ckpt=str(tiny_checkpoint), batch=batch, out=str(out)
            )
        )
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",  # a free port on this machine
            "--nproc-per-node",
            str(procs),
        ]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        proc = subprocess.run([*cmd, str(script)], capture_output=True, text=True, timeout=300, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        outs[procs] = weights(out / "checkpoint.pt")
        assert len((out / "metrics.jsonl").read_text().splitlines()) == 2  # 4 clips / global batch 2
    start = weights(tiny_checkpoint)
    moved = 0
    for k, v in outs[1].items():
        torch.testing.assert_close(outs[2][k], v, rtol=0, atol=1e-6, msg=k)
        moved += int(not torch.equal(v, start[k]))
    assert moved > 50


def test_validation_metrics_and_files(tiny_checkpoint, tmp_path):
    val = Shapes(2, source_size=128, data_seed=7)
    r = fit(tiny(tiny_checkpoint), data(), settings(epochs=1), out=tmp_path / "run", val=val)
    assert [v["step"] for v in r.validation] == [5]
    assert 0.0 <= r.validation[0]["val_miou"] <= 1.0
    records = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {"loss", "loss_mask", "loss_dice", "loss_iou", "loss_class", "lr", "grad_norm"} <= records[
        0
    ].keys()
    assert records[-1]["val_miou"] == r.validation[0]["val_miou"]
    # the learning rate follows the cosine from lr down toward lr / 10
    lrs = [x["lr"] for x in records if "lr" in x]
    assert lrs[0] == pytest.approx(1e-4) and all(a > b for a, b in zip(lrs, lrs[1:]))
    # the official layout: exactly the keys of the model, loadable by load_model
    sd = weights(r.checkpoint)
    assert sd.keys() == samkit.load_model("test-tiny", checkpoint=tiny_checkpoint).state_dict().keys()
    samkit.load_model("test-tiny", checkpoint=r.checkpoint)


def test_freeze_keeps_the_image_encoder(tiny_checkpoint, tmp_path):
    r = fit(tiny(tiny_checkpoint), data(), settings(epochs=1, freeze=("image_encoder",)), out=tmp_path / "f")
    before, after = weights(tiny_checkpoint), weights(r.checkpoint)
    enc = [k for k in after if k.startswith("image_encoder.")]
    assert enc and all(torch.equal(after[k], before[k]) for k in enc)
    assert any(not torch.equal(after[k], before[k]) for k in after if k.startswith("sam_mask_decoder."))


def test_lora_trains_low_rank_updates_merged_on_save(tiny_checkpoint, tmp_path):
    r = fit(tiny(tiny_checkpoint), data(), settings(epochs=1, lora_rank=2), out=tmp_path / "l")
    before, after = weights(tiny_checkpoint), weights(r.checkpoint)
    assert after.keys() == before.keys()  # no LoRA keys: merged into the official weights
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed and all(k.endswith(".weight") for k in changed)
    assert any("q_proj" in k for k in changed)
    # only attention projections moved, each by a matrix of rank <= 2
    for k in changed:
        assert any(t in k for t in ("qkv", "attn.proj", "q_proj", "k_proj", "v_proj", "out_proj")), k
        assert torch.linalg.matrix_rank((after[k] - before[k]).double(), atol=1e-7) <= 2
    assert not any(k.startswith("sam_prompt_encoder.") for k in changed)


def test_bad_settings_are_clear_errors(tiny_checkpoint, tmp_path):
    with pytest.raises(ValueError, match="steps must be >= 1"):
        TrainSettings(steps=0)
    with pytest.raises(ValueError, match="cannot freeze 'decoder'"):
        fit(tiny(tiny_checkpoint), data(), settings(freeze=("decoder",)), out=tmp_path / "x")
    everything = ("image_encoder", "prompt_encoder", "mask_decoder", "memory")
    with pytest.raises(ValueError, match="every parameter is frozen"):
        fit(tiny(tiny_checkpoint), data(), settings(freeze=everything), out=tmp_path / "y")
    with pytest.raises(ValueError, match="enough items"):
        fit(tiny(tiny_checkpoint), [(Shapes(1), 2)], settings(), out=tmp_path / "z")


def test_activation_checkpointing_gives_the_same_gradients(tiny_checkpoint):
    from samkit.train.batch import collate
    from samkit.train.forward import train_forward
    from samkit.train.loop import enable_activation_checkpointing
    from samkit.train.loss import MultiStepLoss

    batch = collate([Shapes(1, num_frames=3, source_size=128)[0]])
    grads = []
    for checkpointing in (False, True):
        model = tiny(tiny_checkpoint).train()
        if checkpointing:
            enable_activation_checkpointing(model)
        torch.manual_seed(0)
        results, _ = train_forward(model, batch, PromptSimulation(prob_points=1.0), np.random.default_rng(0))
        MultiStepLoss()(results, batch.masks)["total"].backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for n in grads[0]:
        torch.testing.assert_close(grads[1][n], grads[0][n], rtol=1e-5, atol=1e-7, msg=n)


def test_bf16_autocast_trains(tiny_checkpoint, tmp_path):
    r = fit(tiny(tiny_checkpoint), data(), settings(steps=2, precision="bf16"), out=tmp_path / "b")
    assert r.steps == 2 and np.isfinite(r.metrics["loss"])
    sd = weights(r.checkpoint)
    assert all(v.dtype == torch.float32 for v in sd.values() if v.is_floating_point())


def test_training_only_the_mask_decoder(tiny_checkpoint, tmp_path):
    parts = ("image_encoder", "prompt_encoder", "memory")
    model = tiny(tiny_checkpoint)
    r = fit(model, data(), settings(epochs=1, freeze=parts), out=tmp_path / "d")
    before, after = weights(tiny_checkpoint), weights(r.checkpoint)
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed and all(k.startswith("sam_mask_decoder.") for k in changed)
    # fit hands the model back ready for the predictors: eval mode, no dropout, all trainable again
    assert not model.training and all(p.requires_grad for p in model.parameters())
    assert all(b.drop_path == 0.0 for b in model.image_encoder.trunk.blocks)
    for k, v in model.state_dict().items():
        assert torch.equal(v, after[k]), k
