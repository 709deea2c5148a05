"""Module-level checks on tiny configs: shapes, position encodings, RoPE, no NaNs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from samkit.checkpoints import build_model
from samkit.configs import VARIANTS
from samkit.modeling.hiera import window_partition, window_unpartition
from samkit.modeling.position_encoding import (
    PositionEmbeddingSine,
    apply_rope,
    apply_rope_real,
    axial_rope_angles,
    rope_cos_sin,
    rope_rotations,
)
from samkit.policy import override


def test_image_encoder_shapes(tiny_model):
    cfg = tiny_model.cfg
    x = torch.randn(2, 3, cfg.image_size, cfg.image_size)
    with torch.no_grad():
        out = tiny_model.image_encoder(x)
    assert [tuple(f.shape) for f in out.features] == [(2, cfg.d_model, h, w) for h, w in cfg.feature_sizes]
    assert [p.shape for p in out.pos] == [f.shape for f in out.features]
    assert all(torch.isfinite(f).all() for f in out.features)


def test_encoder_batch_equals_one_by_one(tiny_model):
    x = torch.randn(3, 3, 128, 128)
    with torch.no_grad():
        batch, _ = tiny_model.encode_image(x)
        singles = torch.cat([tiny_model.encode_image(x[i : i + 1])[0] for i in range(3)])
    torch.testing.assert_close(batch, singles, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("h, w, win", [(8, 8, 4), (7, 9, 4), (14, 14, 8)])
def test_window_partition_roundtrip(h, w, win):
    x = torch.randn(2, h, w, 5)
    windows, padded = window_partition(x, win)
    assert windows.shape[1:3] == (win, win)
    torch.testing.assert_close(window_unpartition(windows, win, padded, (h, w)), x)


def test_sine_encoding_properties():
    pe = PositionEmbeddingSine(64)(torch.zeros(2, 1, 6, 10))
    assert pe.shape == (2, 64, 6, 10)
    # channel 0 is sin(2*pi*y/H) for rows y = 1..H; channel 32 the same along x
    ys = torch.arange(1, 7, dtype=torch.float32) / 6
    torch.testing.assert_close(pe[0, 0, :, 0], torch.sin(2 * math.pi * ys), atol=1e-5, rtol=0)
    xs = torch.arange(1, 11, dtype=torch.float32) / 10
    torch.testing.assert_close(pe[0, 32, 0, :], torch.sin(2 * math.pi * xs), atol=1e-5, rtol=0)
    assert torch.all(pe[0, :32].std(dim=2) < 1e-6)  # y channels constant along x


def test_rope_rotation_preserves_norm_and_matches_complex():
    x = torch.randn(2, 3, 16, 8)
    angles = axial_rope_angles(8, 4, 4)
    out = apply_rope(x, rope_rotations(angles))
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1))
    # each pair (a, b) turned by its angle: (a cos - b sin, a sin + b cos)
    a, b = x[..., 0::2], x[..., 1::2]
    c, s = angles.cos(), angles.sin()
    torch.testing.assert_close(out[..., 0::2], a * c - b * s)
    torch.testing.assert_close(out[..., 1::2], a * s + b * c)
    # in place into a bf16 tensor: rotated in float32, stored rounded
    into = x.to(torch.bfloat16)
    apply_rope(into, rope_rotations(angles), out=into)
    torch.testing.assert_close(into.float(), out, atol=0.02, rtol=0.01)


@pytest.mark.parametrize("shape", [(1, 1, 20, 8), (1, 1, 16, 6)])
def test_rope_rejects_tokens_that_are_not_whole_frames(shape):
    # 20 keys are not whole frames of a 4x4 grid; width 6 does not match rotations of width 8
    with pytest.raises(ValueError, match="whole frames"):
        apply_rope(torch.randn(shape), rope_rotations(axial_rope_angles(8, 4, 4)))


def test_all_variants_build_on_meta():
    for name, cfg in VARIANTS.items():
        with torch.device("meta"):
            model = build_model(cfg, device="meta")
        n = sum(p.numel() for p in model.parameters())
        assert n > 0, name


def test_memory_modules_run(tiny_model):
    cfg = tiny_model.cfg
    s = cfg.embedding_size
    with torch.no_grad():
        mem, pos = tiny_model.memory_encoder(
            torch.randn(2, cfg.d_model, s, s), torch.randn(2, 1, cfg.image_size, cfg.image_size)
        )
        assert mem.shape == (2, cfg.mem_dim, s, s) and pos.shape == mem.shape
        curr = torch.randn(2, s * s, cfg.d_model)
        memory = torch.randn(2, 2 * s * s + 4, cfg.mem_dim)
        out = tiny_model.memory_attention(
            curr, torch.randn_like(curr), memory, torch.randn_like(memory), num_obj_ptr_tokens=4
        )
    assert out.shape == curr.shape and torch.isfinite(out).all()
    assert math.isfinite(out.sum().item())


def test_real_rope_equals_complex_rope():
    """The real cos/sin form (what ONNX export traces) against the complex products, over several frames
    of keys; and the memory attention with either form, pointer tokens and a key mask included."""
    angles = axial_rope_angles(8, 4, 4)
    x = torch.randn(2, 3, 48, 8)  # three frames of the 4x4 grid
    torch.testing.assert_close(
        apply_rope_real(x, *rope_cos_sin(angles)), apply_rope(x, rope_rotations(angles))
    )

    model = build_model(VARIANTS["test-tiny"], device="cpu").eval()
    cfg, s = model.cfg, model.cfg.embedding_size
    torch.manual_seed(1)
    curr = torch.randn(2, s * s, cfg.d_model)
    memory = torch.randn(2, 3 * s * s + 8, cfg.mem_dim)
    mask = torch.rand(2, memory.shape[1]) > 0.3
    args = (curr, torch.randn_like(curr), memory, torch.randn_like(memory))
    with torch.no_grad():
        want = model.memory_attention(*args, num_obj_ptr_tokens=8, memory_mask=mask)
        with override(rope="real"):
            got = model.memory_attention(*args, num_obj_ptr_tokens=8, memory_mask=mask)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_hiera_position_embedding_cache_follows_the_weights():
    from samkit.modeling.hiera import Hiera

    torch.manual_seed(0)
    trunk = Hiera(VARIANTS["test-tiny"].hiera)
    with torch.no_grad():
        first = trunk.position_embedding(32, 32)
        assert trunk.position_embedding(32, 32) is first  # cached
        trunk.pos_embed.add_(1.0)  # loading other weights in place
        second = trunk.position_embedding(32, 32)
    assert torch.allclose(second, first + 1.0, atol=1e-5)
    # training: no cache, gradients reach the parameter
    trunk.pos_embed.grad = None
    trunk.position_embedding(32, 32).sum().backward()
    assert trunk.pos_embed.grad is not None and trunk.pos_embed.grad.abs().sum() > 0


def test_reduced_precision_lateral_matches_the_convolution():
    from samkit.modeling.image_encoder import _Lateral

    torch.manual_seed(0)
    lat = _Lateral(16, 8)
    x = torch.randn(2, 10, 12, 16).permute(0, 3, 1, 2)  # channels-last, as the trunk hands it over
    exact = lat(x)
    fast = lat.to(torch.bfloat16)(x.to(torch.bfloat16))
    assert fast.shape == exact.shape == (2, 8, 10, 12) and fast.dtype == torch.bfloat16
    assert torch.allclose(fast.float(), exact, atol=0.05, rtol=0.05)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_patch_embedding_layout_and_values(dtype):
    """The fast path's patch embedding runs its convolution channels-last, so its (B, H, W, C) tokens
    come out contiguous with no layout copy; float32 keeps the reference's layout (a permuted view of
    the NCHW output). The values are those of the plain convolution either way."""
    from samkit.modeling.hiera import PatchEmbed

    torch.manual_seed(0)
    pe = PatchEmbed(16).to(dtype)
    x = torch.randn(2, 3, 64, 48, dtype=dtype)
    with torch.inference_mode():
        got = pe(x)
        want = pe.proj(x).permute(0, 2, 3, 1)
    assert got.shape == (2, 16, 12, 16)
    if dtype == torch.float32:
        assert got.permute(0, 3, 1, 2).is_contiguous()
    else:
        assert got.is_contiguous()
    assert torch.equal(got, want)


def test_trunk_hands_the_neck_the_reference_layouts(tiny_model):
    """float32: the first stage's map is NCHW in memory and the later ones channels-last, as in the
    reference (the neck's 1x1 convolutions round by layout); the values do not depend on it."""
    trunk = tiny_model.image_encoder.trunk
    x = torch.randn(1, 3, tiny_model.image_size, tiny_model.image_size)
    with torch.inference_mode():
        maps = trunk(x)
    assert maps[0].is_contiguous()
    for m in maps[1:]:
        assert m.permute(0, 2, 3, 1).is_contiguous()


def test_bf16_mlp_fuses_its_activation_and_matches_float32():
    from samkit.modeling.common import MLP

    torch.manual_seed(0)
    mlp = MLP(96, 384, 96, 2, activation=torch.nn.GELU)
    x = torch.randn(4, 96)
    with torch.inference_mode():
        want = mlp(x)
        got = mlp.to(torch.bfloat16)(x.to(torch.bfloat16))
    assert got.dtype == torch.bfloat16
    assert (got.float() - want).abs().max() <= 0.03 * want.abs().max()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    "shape,stride", [((2, 8, 8, 6), (2, 2)), ((1, 7, 9, 5), (2, 2)), ((3, 9, 6, 4), (3, 2))]
)
def test_query_pooling_equals_max_pool2d(dtype, shape, stride):
    """hiera._pool (a maximum over the stride's sub-grids of channels-last tokens) gives exactly
    F.max_pool2d's values, a remainder row or column dropped, on strided inputs (q of a qkv) too."""
    from samkit.modeling.hiera import _pool

    torch.manual_seed(0)
    qkv = torch.randn(*shape[:3], 3, shape[3]).to(dtype)
    x = qkv[:, :, :, 1]  # a strided slice, as the attention's queries are
    x[0, 0, 0, 0] = float("nan")  # propagated like max_pool2d does
    want = F.max_pool2d(x.permute(0, 3, 1, 2), kernel_size=stride, stride=stride).permute(0, 2, 3, 1)
    got = _pool(x, stride)
    assert got.shape == want.shape
    assert torch.equal(got.nan_to_num(7.0), want.nan_to_num(7.0))
    assert got.isnan().sum() == want.isnan().sum() == 1
    assert _pool(x, None) is x


def test_one_stability_score_with_the_references_two_empties():
    """modeling.common.stability_score is the one implementation: the decoder's fallback scores an
    empty looser mask 1, the automatic generator (amg.stability_score) NaN, as the reference does."""
    from samkit import amg
    from samkit.modeling.common import stability_score

    logits = torch.full((2, 4, 4), -5.0)
    logits[0, :2, :2] = 3.0  # 4 pixels above +1, the same 4 above -1
    logits[0, 2, 2] = 0.5  # above -1 only
    got = stability_score(logits, 0.0, 1.0)
    assert got[0].item() == pytest.approx(4 / 5) and got[1].item() == 1.0
    nan = amg.stability_score(logits, 0.0, 1.0)
    assert nan[0].item() == got[0].item() and torch.isnan(nan[1])
