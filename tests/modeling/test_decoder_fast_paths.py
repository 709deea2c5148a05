"""The mask decoder's re-associated attentions, prompt groups and token-order upscaling compute what
the plain formulation computes (up to float rounding), on random weights."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from samkit.modeling.transformer import Attention, TwoWayTransformer
from samkit.policy import current

torch.manual_seed(0)


def close(a: torch.Tensor, b: torch.Tensor, rtol: float = 2e-5) -> None:
    assert a.shape == b.shape
    a, b = a.detach(), b.detach()
    scale = float(b.abs().max())
    err = float((a - b).abs().max())
    assert err <= rtol * max(scale, 1.0), f"max abs diff {err:.3g} (scale {scale:.3g})"


@pytest.fixture(scope="module")
def attn() -> Attention:
    a = Attention(256, 8, downsample_rate=2)  # internal 128: 8 heads x 7 tokens = 56 < 128
    for p in a.parameters():
        torch.nn.init.normal_(p, std=0.1)
    return a.eval()


def test_tokens_to_image_reassociated_equals_forward(attn):
    assert attn._cheaper_reassociated(7)
    q, k, v = torch.randn(3, 7, 256), torch.randn(3, 100, 256), torch.randn(3, 100, 256)
    close(attn.attend_to_image(q, k, v), attn(q, k, v))
    # one image for every prompt: projected once (kv_heads) or broadcast
    k1, v1 = k[:1], v[:1]
    want = attn(q, k1.expand(3, -1, -1), v1.expand(3, -1, -1))
    close(attn.attend_to_image(q, k1, v1), want)
    kv_heads = attn.project_kv(k1, v1)
    # stored as every call reads them: no per-call copy of a transposed view
    assert all(x.is_contiguous() for x in kv_heads) and attn.project_q(k1).is_contiguous()
    close(attn.attend_to_image(q, None, None, kv_heads=kv_heads), want)


def test_image_to_tokens_reassociated_equals_forward(attn):
    q, k, v = torch.randn(3, 100, 256), torch.randn(3, 7, 256), torch.randn(3, 7, 256)
    res = torch.randn(3, 100, 256)
    close(attn.attend_to_tokens(q, k, v, residual=res), res + attn(q, k, v))
    q1, r1 = q[:1], res[:1]
    want = r1 + attn(q1.expand(3, -1, -1), k, v)
    close(attn.attend_to_tokens(None, k, v, residual=r1, q_heads=attn.project_q(q1)), want)


def test_many_tokens_fall_back_to_the_plain_product(attn):
    # 20 tokens x 8 heads > 128: the re-associated form would cost more, forward() runs instead
    assert not attn._cheaper_reassociated(20)
    q, k, v = torch.randn(2, 20, 256), torch.randn(2, 50, 256), torch.randn(2, 50, 256)
    assert torch.equal(attn.attend_to_image(q, k, v), attn(q, k, v))
    res = torch.randn(2, 50, 256)
    assert torch.equal(attn.attend_to_tokens(k, q, q, residual=res), res + attn(k, q, q))


def test_float32_tokens_attend_with_a_bfloat16_image(attn):
    """The fast decoder's mix: float32 tokens (and weights) against a bfloat16 image. Every attention
    path gives back the tokens' dtype (tokens -> image) or the residual image's (image -> tokens),
    close to the all-float32 result."""
    bf = torch.bfloat16
    q, k, v = torch.randn(3, 7, 256), torch.randn(3, 100, 256), torch.randn(3, 100, 256)
    many = torch.randn(3, 20, 256)  # the plain product (forward) with mixed dtypes
    for toks in (q, many):
        got = attn.attend_to_image(toks, k.to(bf), v.to(bf))
        assert got.dtype == torch.float32
        close(got, attn(toks, k, v), rtol=3e-2)
    got = attn.attend_to_image(q, None, None, kv_heads=attn.project_kv(k[:1].to(bf), v[:1].to(bf)))
    assert got.dtype == torch.float32
    close(got, attn(q, k[:1].expand(3, -1, -1), v[:1].expand(3, -1, -1)), rtol=3e-2)

    res = torch.randn(3, 100, 256)
    for toks in (q, many):
        got = attn.attend_to_tokens(k.to(bf), toks, toks, residual=res.to(bf))
        assert got.dtype == bf
        close(got.float(), res + attn(k, toks, toks), rtol=3e-2)
    got = attn.attend_to_tokens(None, q, q, residual=res[:1].to(bf), q_heads=attn.project_q(k[:1].to(bf)))
    assert got.dtype == bf
    close(got.float(), res[:1] + attn(k[:1].expand(3, -1, -1), q, q), rtol=3e-2)


def test_transformer_shared_image_equals_repeated_image():
    t = TwoWayTransformer(depth=2, embedding_dim=256, num_heads=8, mlp_dim=512).eval()
    img, pe, pts = torch.randn(1, 256, 8, 8), torch.randn(1, 256, 8, 8), torch.randn(5, 9, 256)
    hs_shared, keys_shared = t(img, pe, pts, t.share_image(img, pe), n_out=6)
    hs, keys = t(img.expand(5, -1, -1, -1), pe, pts)
    close(hs_shared, hs[:, :6])
    close(keys_shared, keys)


def decoder_inputs(model, n: int, dtype: torch.dtype = torch.float32):
    """Random inputs of the mask decoder for one image and n single-point prompts, in ``dtype``:
    (image embedding, positional encoding, sparse prompts, dense prompts, high-res features)."""
    size = model.image_size
    emb_hw = size // 16
    c = model.sam_mask_decoder.transformer_dim
    embed = torch.randn(1, c, emb_hw, emb_hw, dtype=dtype)
    feats = [
        torch.randn(1, c // 8, 4 * emb_hw, 4 * emb_hw, dtype=dtype),
        torch.randn(1, c // 4, 2 * emb_hw, 2 * emb_hw, dtype=dtype),
    ]
    pts = torch.rand(n, 1, 2) * size
    labels = torch.ones(n, 1, dtype=torch.int32)
    with torch.inference_mode():
        sparse, dense = model.sam_prompt_encoder(points=(pts, labels), boxes=None, masks=None)
        pe = model.sam_prompt_encoder.get_dense_pe()
    return embed, pe.to(dtype), sparse.to(dtype), dense.to(dtype), feats


def test_many_prompts_equal_one_by_one(tiny_model):
    """More prompts than a group (the policy's prompt_group) on one image: the same masks as one prompt at a time."""
    model = tiny_model
    n = 2 * current("cpu").prompt_group + 3
    emb_hw = model.image_size // 16
    embed, pe, sparse, dense, feats = decoder_inputs(model, n)
    with torch.inference_mode():
        for multimask in (True, False):
            masks, ious, tokens, obj = model.sam_mask_decoder(
                embed, pe, sparse, dense, multimask, True, feats
            )
            assert masks.shape == (n, 3 if multimask else 1, 4 * emb_hw, 4 * emb_hw)
            assert torch.isfinite(masks).all()
            for i in range(n):
                one = model.sam_mask_decoder(embed, pe, sparse[i : i + 1], dense[:1], multimask, False, feats)
                close(masks[i : i + 1], one[0])
                close(ious[i : i + 1], one[1])
                close(tokens[i : i + 1], one[2])
                close(obj[i : i + 1], one[3])


def test_bf16_groups_equal_one_by_one(tiny_model):
    """A bfloat16 decoder takes prompts in larger groups (the policy's prompt_group_bf16); more prompts than a group
    give each prompt the masks and scores it gets alone, up to bfloat16 rounding."""
    dec = tiny_model.bf16_mask_decoder()
    group = current("cpu").prompt_group_bf16
    n = group + 3
    embed, pe, sparse, dense, feats = decoder_inputs(tiny_model, n, torch.bfloat16)
    with torch.inference_mode():
        masks, ious, _, _ = dec(embed, pe, sparse, dense, True, True, feats)
        assert masks.dtype == torch.bfloat16 and masks.shape[0] == n
        for i in (0, group - 1, group, n - 1):
            one = dec(embed, pe, sparse[i : i + 1], dense[:1], True, False, feats)
            close(masks[i : i + 1].float(), one[0].float(), rtol=3e-2)
            close(ious[i : i + 1].float(), one[1].float(), rtol=3e-2)


def test_fast_decoder_keeps_its_tokens_in_float32(tiny_model):
    """The bf16 decoder copy casts only its image-side layers: the tokens, scores and object pointers
    stay float32, the masks come in bfloat16, and both are close to the float32 decoder's."""
    dec = tiny_model.bf16_mask_decoder()
    assert dec.image_dtype == torch.bfloat16 and dec.iou_token.weight.dtype == torch.float32
    image_side = {id(p) for m in dec.image_side_modules() for p in m.parameters()}
    for p in dec.parameters():
        assert p.dtype == (torch.bfloat16 if id(p) in image_side else torch.float32)
    embed, pe, sparse, dense, feats = decoder_inputs(tiny_model, 3)
    bf = [x.bfloat16() for x in (embed, pe, dense)]
    with torch.inference_mode():
        want = tiny_model.sam_mask_decoder(embed, pe, sparse, dense, True, True, feats)
        got = dec(bf[0], bf[1], sparse, bf[2], True, True, [f.bfloat16() for f in feats])
    assert got[0].dtype == torch.bfloat16 and got[1].dtype == got[2].dtype == torch.float32
    for g, w in zip(got, want):
        close(g.float(), w, rtol=3e-2)


def test_layer_norm_in_upscaling_matches_layernorm2d(tiny_model):
    """The token-order path normalizes with F.layer_norm; the module is LayerNorm2d (eps 1e-6)."""
    ln = tiny_model.sam_mask_decoder.output_upscaling[1]
    x = torch.randn(2, ln.weight.shape[0], 5, 7)
    with torch.inference_mode():
        want = ln(x)
        got = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), ln.weight, ln.bias, ln.eps).permute(
            0, 3, 1, 2
        )
    close(got, want)


def test_min_iou_skips_only_prompts_whose_masks_all_fail(tiny_model):
    model = tiny_model
    n, emb_hw = 12, model.image_size // 16
    c = model.sam_mask_decoder.transformer_dim
    embed = torch.randn(1, c, emb_hw, emb_hw)
    feats = [torch.randn(1, c // 8, 4 * emb_hw, 4 * emb_hw), torch.randn(1, c // 4, 2 * emb_hw, 2 * emb_hw)]
    pts = torch.rand(n, 1, 2) * model.image_size
    with torch.inference_mode():
        sparse, dense = model.sam_prompt_encoder(
            points=(pts, torch.ones(n, 1, dtype=torch.int32)), boxes=None, masks=None
        )
        pe = model.sam_prompt_encoder.get_dense_pe()
        masks, ious, _, _ = model.sam_mask_decoder(embed, pe, sparse, dense, True, True, feats)
        t = float(ious.max(1).values.median())  # about half of the prompts pass
        got, got_ious, _, _ = model.sam_mask_decoder(embed, pe, sparse, dense, True, True, feats, min_iou=t)
    keep = (ious > t).any(1)
    assert 0 < int(keep.sum()) < n
    assert torch.equal(got_ious, ious)
    assert torch.equal(got[keep], masks[keep])
    assert torch.isneginf(got[~keep]).all()


def test_no_prompts_give_empty_outputs(tiny_model):
    dec = tiny_model.sam_mask_decoder
    c, hw = dec.transformer_dim, tiny_model.image_size // 16
    embed = torch.randn(1, c, hw, hw)
    feats = [torch.randn(1, c // 8, 4 * hw, 4 * hw), torch.randn(1, c // 4, 2 * hw, 2 * hw)]
    pe = tiny_model.sam_prompt_encoder.get_dense_pe()
    with torch.inference_mode():
        masks, ious, tokens, obj = dec(
            embed, pe, torch.zeros(0, 2, c), torch.zeros(0, c, hw, hw), True, True, feats
        )
    assert masks.shape == (0, 3, 4 * hw, 4 * hw) and ious.shape == (0, 3)
    assert tokens.shape == (0, 3, c) and obj.shape == (0, 1)
