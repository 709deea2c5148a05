"""Shared fixtures: test data from ../shared/data, tiny random models, oracle checkpoints."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
sys.path.insert(0, str(TESTS))  # makes `import oracle` work

DATA = Path(os.environ.get("SAMKIT_TEST_DATA", ROOT.parent / "shared" / "data"))

torch.set_num_threads(max(1, min(os.cpu_count() or 1, 4)))

try:
    # transformers (text prompts) decides once whether torchvision is installed; ask it now, before a
    # parity module puts the oracle's torchvision stand-in (tests/oracle/stubs) on sys.path, which it
    # would take for the real package
    from transformers.utils.import_utils import is_torchvision_available

    is_torchvision_available()
except ImportError:  # pragma: no cover - transformers is in the test extra
    pass


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA / "images" / "truck.jpg").exists():
        raise RuntimeError(f"test data not found at {DATA}; set SAMKIT_TEST_DATA")
    return DATA


@pytest.fixture(scope="session")
def truck(data_dir) -> np.ndarray:
    from samkit.transforms import load_image

    return load_image(data_dir / "images" / "truck.jpg")


@pytest.fixture(scope="session")
def groceries(data_dir) -> np.ndarray:
    from samkit.transforms import load_image

    return load_image(data_dir / "images" / "groceries.jpg")


def random_tiny_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Weights for the small `test-tiny` config: default init plus seeded noise (so every tensor matters)."""
    from samkit.checkpoints import build_model

    torch.manual_seed(seed)
    model = build_model("test-tiny")
    g = torch.Generator().manual_seed(seed + 1)
    return {
        k: v + 0.05 * torch.randn(v.shape, generator=g) if v.is_floating_point() else v
        for k, v in model.state_dict().items()
    }


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "test_tiny.pt"
    torch.save({"model": random_tiny_state_dict()}, path)
    return path


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint):
    from samkit import load_model

    return load_model("test-tiny", checkpoint=tiny_checkpoint, device="cpu")


@pytest.fixture(scope="session")
def oracle_checkpoint():
    """Factory: variant -> path of a perturbed reference checkpoint (made once, cached on disk)."""
    import oracle

    return oracle.checkpoint


@pytest.fixture
def tile_calls(monkeypatch):
    """What each call of the flat-tile path returned: True for masks, False for 'take the banded path'."""
    from samkit.kernels import upsample as T

    calls = []
    real = T._threshold_by_tiles

    def spy(*args):
        out = real(*args)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(T, "_threshold_by_tiles", spy)
    return calls


@pytest.fixture
def mock_cpu(monkeypatch):
    """Factory: make the execution policy see a CPU with the given :class:`samkit.policy.CPUFeatures`
    (``mock_cpu(avx512_bf16=True)``), whatever this machine has. Models loaded afterwards and the
    kernels follow it; the real features come back after the test."""
    from samkit import policy

    def use(**features):
        # oneDNN's fused bf16 linear runs only on CPUs that really have native bf16: off unless asked
        features.setdefault("onednn", False)
        feats = policy.CPUFeatures(**features)
        monkeypatch.setattr(policy, "cpu_features", lambda: feats)
        policy._default.cache_clear()
        return feats

    yield use
    policy._default.cache_clear()
