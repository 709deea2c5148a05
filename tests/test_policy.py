"""The execution policy: one decision per CPU-feature combination and device, made once per model,
read by the predictors and kernels, printed by the tools."""

from __future__ import annotations

import itertools
import sys

import pytest
import torch

import samkit
from samkit import policy
from samkit.policy import CPUFeatures, Policy, decide

FEATURES = [
    CPUFeatures(avx512_bf16=a, amx=b, onednn=c) for a, b, c in itertools.product([False, True], repeat=3)
]


@pytest.mark.parametrize(
    "feats", FEATURES, ids=lambda f: f"bf16={f.avx512_bf16},amx={f.amx},onednn={f.onednn}"
)
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cpu_decisions_for_every_feature_set(feats, precision):
    p = decide("cpu", precision, features=feats)
    fast = feats.avx512_bf16 or feats.amx
    bf16 = precision == "bf16"
    assert p.device == "cpu" and p.precision == precision
    # the light models in bf16 only on the fast path, and only where bf16 matmuls are native
    assert p.click_decoder == ("bf16" if bf16 and fast else "fp32")
    assert p.tracking_autocast is (bf16 and fast)
    assert p.amg_decoder == ("bf16" if fast else "fp32")
    # the encoder too: emulated bf16 (no AVX512-BF16/AMX) made it slower than float32
    assert p.encoder == ("bf16" if bf16 and fast else "fp32")
    # attention by matmuls exactly on AVX512-BF16 without AMX; the fused linear needs oneDNN and bf16
    assert p.attention == ("matmuls" if feats.avx512_bf16 and not feats.amx else "fused")
    assert p.fused_linear is (feats.onednn and fast)
    # CPU layouts: cache-sized work, flat-tile upsampling, one image at a time, no graphs
    assert (p.upscale, p.upsample, p.amg_cells, p.encoder_batch) == ("tiled", "tiles", True, 1)
    assert (p.prompt_group, p.prompt_group_bf16) == (4, 16)
    assert not (p.cuda_graphs or p.batch_objects or p.prefetch_frames)


@pytest.mark.parametrize("bf16_supported", [False, True])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_gpu_decisions(bf16_supported, precision):
    p = decide("cuda:0", precision, cuda_bf16=bf16_supported)
    assert p.device == "cuda"
    # launch-bound at a click's size: the light models stay float32, whatever the GPU supports
    assert p.click_decoder == "fp32" and not p.tracking_autocast
    assert p.amg_decoder == ("bf16" if bf16_supported else "fp32")
    assert p.encoder == precision
    assert (p.attention, p.fused_linear) == ("fused", False)
    assert (p.upscale, p.upsample, p.amg_cells) == ("untiled", "interpolate", False)
    assert (p.prompt_group, p.prompt_group_bf16, p.encoder_batch) == (64, 64, 64)
    assert p.cuda_graphs and p.batch_objects and p.prefetch_frames
    assert decide("cuda", cuda_graphs=False, cuda_bf16=True).cuda_graphs is False


def test_other_devices_take_the_plain_routes():
    p = decide("mps", "bf16")
    assert (p.click_decoder, p.amg_decoder, p.tracking_autocast, p.cuda_graphs) == (
        "fp32",
        "fp32",
        False,
        False,
    )
    assert p.upsample == "interpolate" and p.prefetch_frames


def test_features_agree_with_the_cpu():
    """Probed on first use (not at import), and as the CPU reports them (/proc/cpuinfo on Linux)."""
    feats = policy.cpu_features()
    assert policy.cpu_features() is feats  # once per process
    if sys.platform.startswith("linux"):
        flags = open("/proc/cpuinfo").read().split()
        assert feats.avx512_bf16 == ("avx512_bf16" in flags)
        assert feats.amx == ("amx_tile" in flags)


def test_bad_values_and_names_are_refused():
    with pytest.raises(ValueError, match="precision"):
        decide("cpu", "fp16")
    with pytest.raises(ValueError, match="attention"):
        Policy(attention="flash")
    with pytest.raises(ValueError, match="encoder_batch"):
        Policy(encoder_batch=0)
    with pytest.raises(TypeError):
        Policy().replace(no_such_field=1)
    with pytest.raises(TypeError):
        with policy.override(no_such_field=1):
            pass


def test_override_is_scoped_and_nests():
    base = policy.current("cpu")
    with policy.override(attention="matmuls"):
        assert policy.current("cpu").attention == "matmuls"
        with policy.override(upscale="untiled"):
            p = policy.current("cpu")
            assert (p.attention, p.upscale) == ("matmuls", "untiled")
        assert policy.current("cpu").upscale == base.upscale
    assert policy.current("cpu") == base


def test_model_policy_is_decided_once_by_load_model(tiny_checkpoint, mock_cpu):
    feats = mock_cpu(avx512_bf16=True)
    fast = samkit.load_model(
        "test-tiny", checkpoint=tiny_checkpoint, device="cpu", precision="bf16", compile=True
    )
    p = fast.policy
    assert p == decide("cpu", "bf16", compile=True, features=feats)
    assert fast.policy is p  # stored, not recomputed per call
    assert fast.fast_mask_decoder() is fast.bf16_mask_decoder()
    assert fast.encoder_batch == 1
    # no mutable flags on the model: the old ones are gone
    assert not hasattr(fast, "use_compile") and not hasattr(fast, "use_cuda_graphs")
    # a policy for another device or precision does not fit
    with pytest.raises(ValueError, match="does not fit"):
        fast.policy = decide("cpu", "fp32")
    with pytest.raises(TypeError):
        fast.policy = {"precision": "bf16"}
    # the user's settings survive a new decision (here: a change of precision)
    exact = samkit.load_model("test-tiny", checkpoint=tiny_checkpoint, device="cpu", compile=True)
    assert exact.policy.compile and exact.policy.click_decoder == "fp32"
    samkit.checkpoints.apply_precision(exact, "bf16")
    assert exact.policy.precision == "bf16" and exact.policy.compile


@pytest.mark.parametrize("fast_bf16", [False, True])
def test_the_fast_encoder_is_bf16_only_where_bf16_pays(tiny_checkpoint, tiny_model, mock_cpu, fast_bf16):
    """precision='bf16' casts the encoder where bf16 is native; on a CPU that emulates bf16 the fast
    path keeps the float32 encoder, so it is the exact path: the same embedding, never slower."""
    mock_cpu(avx512_bf16=fast_bf16)
    fast = samkit.load_model("test-tiny", checkpoint=tiny_checkpoint, device="cpu", precision="bf16")
    assert fast.precision == "bf16" and fast.policy.encoder == ("bf16" if fast_bf16 else "fp32")
    dtype = fast.image_encoder.trunk.patch_embed.proj.weight.dtype
    assert dtype == (torch.bfloat16 if fast_bf16 else torch.float32)
    image = torch.rand(1, 3, 128, 128)
    with torch.inference_mode():
        got, want = fast.forward_image(image).features[-1], tiny_model.forward_image(image).features[-1]
    assert torch.equal(got, want) is (not fast_bf16)
    torch.testing.assert_close(got, want, atol=0.1, rtol=0.1)


def test_the_fast_decoder_follows_the_policy(tiny_model):
    """Forcing the model's policy switches the decoder the fast path uses, on any CPU."""
    import copy

    model = copy.deepcopy(tiny_model)
    samkit.checkpoints.apply_precision(model, "bf16")
    model.policy = model.policy.replace(click_decoder="bf16", tracking_autocast=True)
    assert model.fast_mask_decoder() is not model.sam_mask_decoder
    assert model.fast_mask_decoder().image_dtype == torch.bfloat16
    with model.fast_autocast():
        assert torch.is_autocast_enabled("cpu")
    model.policy = model.policy.replace(click_decoder="fp32", tracking_autocast=False)
    assert model.fast_mask_decoder() is model.sam_mask_decoder
    with model.fast_autocast():
        assert not torch.is_autocast_enabled("cpu")


def test_describe_lists_every_field():
    text = decide("cpu").describe()
    for name in Policy.__dataclass_fields__:
        assert f"{name}: " in text
