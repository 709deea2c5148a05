"""The Ray engine on a local Ray instance: the same files as the local engine."""

from __future__ import annotations

import sys

import pytest

from samkit.batch import BatchSettings, RayOptions, RayUnavailable, run_batch
from samkit.batch.ray_engine import _import_ray

from .conftest import AUTO
from .test_local import manifest, results


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["prompts", "auto", "head"])
def test_ray_engine_writes_what_the_local_engine_writes(
    ray_local, tmp_path, photos, prompt_file, tiny_model, tiny_checkpoint, mode
):
    root, keys = photos
    head = None
    if mode == "head":  # a prompt-free head (untrained: the files must match, not be good)
        from samkit.heads import PromptFreeHead

        head = str(PromptFreeHead.from_model(tiny_model, ["a", "b"]).save(tmp_path / "head.pt"))
    s = BatchSettings(
        model="test-tiny",
        checkpoint=str(tiny_checkpoint),
        device="cpu",
        mode=mode,
        auto=AUTO if mode == "auto" else {},
        head=head,
    )
    pf = prompt_file if mode == "prompts" else None
    local, remote = tmp_path / "local", tmp_path / "ray"
    run_batch(root, local, s, prompts=pf, model=tiny_model, progress=False, coco=local / "coco.json")
    summary = run_batch(
        root,
        remote,
        s,
        prompts=pf,
        engine="ray",
        progress=False,
        coco=remote / "coco.json",
        ray=RayOptions(num_cpus=1, concurrency=1, batch_size=2),
    )
    assert summary.ok == len(keys) and summary.failed == 1
    assert results(remote) == results(local) and len(results(local)) == len(keys)
    assert (remote / "coco.json").read_bytes() == (local / "coco.json").read_bytes()

    def statuses(out):
        return {r["image"]: (r["status"], r["masks"], r["error"]) for r in manifest(out)}

    assert statuses(remote) == statuses(local)
    # a rerun on Ray skips what is done, as locally
    again = run_batch(root, remote, s, prompts=pf, engine="ray", progress=False)
    assert again.skipped == len(keys) and again.todo == 1


def test_ray_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(RayUnavailable, match=r"pip install 'samkit\[ray\]'"):
        _import_ray()


def test_ray_options_are_checked():
    with pytest.raises(ValueError, match="concurrency"):
        RayOptions(concurrency=0)
    with pytest.raises(ValueError, match="batch size"):
        RayOptions(batch_size=0)


@pytest.mark.slow
def test_batch_cli_with_the_ray_engine(ray_local, capsys, tmp_path, photos, prompt_file, tiny_checkpoint):
    from samkit.cli import main

    root, keys = photos
    args = ["--model", "test-tiny", "--checkpoint", str(tiny_checkpoint), "--device", "cpu", "--quiet"]
    code = main(
        [
            "batch",
            str(root),
            "--out",
            str(tmp_path / "ray"),
            "--prompts",
            str(prompt_file),
            "--engine",
            "ray",
            "--num-cpus",
            "1",
            "--concurrency",
            "1",
            "--ray-batch-size",
            "3",
            *args,
        ]
    )
    out, err = capsys.readouterr()
    assert code == 3 and f"{len(keys)} ok, 1 failed" in out, err
    code = main(
        [
            "batch",
            str(root),
            "--out",
            str(tmp_path / "local"),
            "--prompts",
            str(prompt_file),
            "--processes",
            "1",
            *args,
        ]
    )
    assert code == 3
    assert results(tmp_path / "ray") == results(tmp_path / "local")
