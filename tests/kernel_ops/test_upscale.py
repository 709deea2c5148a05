"""kernels.upscale: the tiled and untiled token-order upscalings equal the reference's convolutions
(the plain expression), and the policy's ``upscale`` picks one (forced here, so both run anywhere)."""

from __future__ import annotations

import pytest
import torch

from samkit import policy
from samkit.kernels import upscale as K


def close(a, b, rtol=1e-4):
    scale = b.abs().max().clamp_min(1e-6)
    assert (a - b).abs().max() <= rtol * scale, float((a - b).abs().max() / scale)


@pytest.mark.parametrize("kernel", ["tiled", "untiled"])
def test_token_order_upscaling_equals_the_convolutions(tiny_model, kernel):
    dec = tiny_model.sam_mask_decoder
    c, h, w, b, m = dec.transformer_dim, 16, 16, 3, 4
    torch.manual_seed(0)
    src = torch.randn(b, h * w, c)
    hyper = torch.randn(b, m, c // 8)
    feats = [torch.randn(1, c // 8, 4 * h, 4 * w), torch.randn(1, c // 4, 2 * h, 2 * w)]
    with torch.inference_mode():
        want = K.upscale_plain(dec.output_upscaling, src, hyper, (h, w), feats)
        fn = K.upscale_tiled if kernel == "tiled" else K.upscale_untiled
        skips = K.prepare_skips(dec.output_upscaling, feats)
        got = fn(dec.output_upscaling, src, hyper, (h, w), skips, torch.empty_like(want))
        # and through the decoder, with the policy forcing the kernel
        with policy.override(upscale=kernel):
            via_decoder = dec.mask_logits(src, hyper, (h, w), feats)
    close(got, want)
    close(via_decoder, want)


@pytest.mark.parametrize("kernel", ["tiled", "untiled"])
def test_mask_logits_follows_the_policy(tiny_model, monkeypatch, kernel):
    dec = tiny_model.sam_mask_decoder
    c, h, w, b, m = dec.transformer_dim, 16, 16, 3, 4
    calls = []
    for name in ("upscale_tiled", "upscale_untiled"):
        real = getattr(K, name)
        monkeypatch.setattr(K, name, lambda *a, _n=name, _f=real: calls.append(_n) or _f(*a))
    skips = (torch.randn(h * w, c), torch.randn(4 * h * w, c // 2))
    with policy.override(upscale=kernel), torch.inference_mode():
        dec.mask_logits(torch.randn(b, h * w, c), torch.randn(b, m, c // 8), (h, w), skips=skips)
    assert calls == [f"upscale_{kernel}"]


def test_the_devices_decide_the_layout():
    """The CPU's policy tiles the upscaling (cache-sized work), a GPU's does not (kernel launches)."""
    assert policy.decide("cpu").upscale == "tiled"
    assert policy.decide("cuda", cuda_bf16=True).upscale == "untiled"
    assert policy.decide("mps").upscale == "untiled"
