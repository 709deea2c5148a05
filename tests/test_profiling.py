"""samkit.profiling and ``samkit bench --profile`` on the tiny config (no timing is asserted)."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch
from PIL import Image

from samkit import profiling
from samkit.cli import main


@pytest.mark.parametrize(
    "name, kind",
    [
        ("aten::addmm", "matmul"),
        ("aten::bmm", "matmul"),
        ("aten::_scaled_dot_product_flash_attention_for_cpu", "matmul"),
        ("aten::mkldnn_convolution", "matmul"),
        ("aten::native_layer_norm", "norm/elementwise"),
        ("aten::_softmax", "norm/elementwise"),
        ("aten::gelu", "norm/elementwise"),
        ("aten::add_", "norm/elementwise"),
        ("aten::copy_", "layout"),
        ("aten::cat", "layout"),
        ("aten::constant_pad_nd", "layout"),
        ("aten::upsample_bilinear2d", "upsample"),
        ("aten::_upsample_bilinear2d_aa", "upsample"),
        ("aten::view", "other"),
        ("aten::is_nonzero", "other"),
        ("aten::resolve_conj", "other"),
    ],
)
def test_op_kinds(name, kind):
    assert profiling.op_kind(name) == kind


def test_profile_split_finds_each_kind():
    x = torch.randn(256, 256)

    def work():
        y = (x @ x).softmax(-1).t().contiguous()
        return torch.nn.functional.interpolate(y[None, None], size=(512, 512), mode="bilinear")

    split = profiling.profile_split(work)
    assert set(split) == {*profiling.KINDS, "total"}
    assert all(split[k] > 0 for k in ("matmul", "norm/elementwise", "layout", "upsample"))
    assert sum(split[k] for k in profiling.KINDS) <= split["total"] * 1.5


def test_bench_profile_prints_the_split(capsys, tmp_path, tiny_checkpoint, monkeypatch):
    monkeypatch.setattr(profiling, "matmul_gflops", functools.partial(profiling.matmul_gflops, n=64))
    image = tmp_path / "img.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 90, 3), dtype=np.uint8)).save(image)
    code = main(
        ["bench", "--profile", "--image", str(image), "--no-reference", "--model", "test-tiny",
         "--checkpoint", str(tiny_checkpoint)]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "GFLOP/s fp32" in out and "matmul" in out and "layout" in out
    result = json.loads(next(line for line in out.splitlines() if line.startswith("JSON "))[5:])
    assert set(result["rows"]) == {"samkit", "samkit-fast"}
    for figures in result["rows"].values():
        assert set(figures) == {"encode", "click", "track"}
        assert all(f["matmul"] > 0 and f["total"] > 0 for f in figures.values())
    assert result["matmul_gflops"]["fp32"] > 0 and result["matmul_gflops"]["bf16"] > 0
