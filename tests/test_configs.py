"""Variant registry, name resolution, and state-dict layout against the reference configs."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import oracle
from samkit.configs import VARIANTS, get_config, resolve_name, variant_names
from samkit.modeling import SAM2Model


@pytest.mark.parametrize(
    "spelling, expected",
    [
        ("sam2.1-hiera-tiny", "sam2.1-hiera-tiny"),
        ("sam2.1_hiera_tiny", "sam2.1-hiera-tiny"),
        ("facebook/sam2.1-hiera-tiny", "sam2.1-hiera-tiny"),
        ("sam2.1_hiera_tiny.pt", "sam2.1-hiera-tiny"),
        ("sam2_hiera_b+", "sam2-hiera-base-plus"),
        ("facebook/sam2-hiera-base-plus", "sam2-hiera-base-plus"),
        ("sam2.1_hiera_base_plus.pt", "sam2.1-hiera-base-plus"),
        ("SAM2-Hiera-Large", "sam2-hiera-large"),
        ("sam2_hiera_s", "sam2-hiera-small"),
    ],
)
def test_resolve_name_accepts_every_spelling(spelling, expected):
    assert resolve_name(spelling) == expected


@pytest.mark.parametrize("bad", ["sam3-hiera-tiny", "", "tiny", "facebook/sam2.1-hiera-huge"])
def test_unknown_name_lists_valid_ones(bad):
    with pytest.raises(ValueError) as e:
        resolve_name(bad)
    assert "sam2.1-hiera-tiny" in str(e.value) and "sam2-hiera-large" in str(e.value)


def test_eight_official_variants_with_hub_files():
    names = variant_names()
    assert len(names) == 8
    for n in names:
        cfg = VARIANTS[n]
        assert cfg.hf_repo == f"facebook/{n}"
        assert cfg.checkpoint_filename.endswith(".pt")


def test_configs_are_frozen():
    cfg = get_config("sam2.1-hiera-tiny")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.image_size = 512  # type: ignore[misc]


def test_sam21_differs_from_sam2_only_in_its_switches():
    a, b = VARIANTS["sam2-hiera-small"], VARIANTS["sam2.1-hiera-small"]
    differing = {f for f in a.__dataclass_fields__ if getattr(a, f) != getattr(b, f)}
    assert differing == {
        "name",
        "hf_repo",
        "checkpoint_filename",
        "no_obj_embed_spatial",
        "add_tpos_enc_to_obj_ptrs",
        "proj_tpos_enc_in_obj_ptrs",
        "use_signed_tpos_enc_to_obj_ptrs",
    }


@pytest.mark.parity
@pytest.mark.parametrize("variant", variant_names())
def test_state_dict_keys_and_shapes_equal_reference(variant):
    """Every official variant has exactly the reference's parameter names and shapes."""
    oracle.setup()
    ref = oracle.build_reference(variant)
    ref_shapes = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    del ref
    with torch.device("meta"):
        ours = SAM2Model(VARIANTS[variant])
    our_shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert sorted(set(ref_shapes) - set(our_shapes)) == []
    assert sorted(set(our_shapes) - set(ref_shapes)) == []
    assert {k: v for k, v in our_shapes.items() if ref_shapes[k] != v} == {}


# --- honest configs: a value samkit does not implement fails loudly -------------------------------

TINY = VARIANTS["test-tiny"]


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"soft_no_obj_ptr": True}, "soft_no_obj_ptr"),
        ({"directly_add_no_mem_embed": False}, "directly_add_no_mem_embed"),
        ({"scalp": 0}, "scalp"),
        ({"scalp": 2}, "scalp"),
        ({"backbone_stride": 8}, "backbone_stride"),
        ({"fpn_interp_model": "area"}, "fpn_interp_model"),
        ({"num_multimask_outputs": 0}, "num_multimask_outputs"),
        ({"decoder_heads": 3}, "decoder_heads"),
        ({"mem_attn_heads": 3}, "mem_attn_heads"),
        ({"mem_dim": 24}, "mem_dim"),
        ({"mem_fuser_kernel_size": 4}, "mem_fuser_kernel_size"),
        ({"mask_downsampler_kernel": 5}, "mask_downsampler_kernel"),
        ({"mask_downsampler_padding": 0}, "mask_downsampler_padding"),
        ({"mask_downsampler_stride": 3}, "mask_downsampler_stride"),
        ({"mask_downsampler_total_stride": 8}, "mask_downsampler_total_stride"),
        ({"num_maskmem": 0}, "num_maskmem"),
        ({"memory_temporal_stride_for_eval": 0}, "memory_temporal_stride_for_eval"),
        ({"max_cond_frames_in_attn": 1}, "max_cond_frames_in_attn"),
        ({"use_obj_ptrs_in_encoder": False}, "pred_obj_scores"),
        ({"pred_obj_scores": False}, "fixed_no_obj_ptr"),
        ({"image_size": 100}, "image_size"),
        ({"hiera": dataclasses.replace(TINY.hiera, q_pool=2)}, "hiera.q_pool"),
        ({"hiera": dataclasses.replace(TINY.hiera, q_stride=(1, 1))}, "hiera.q_stride"),
        (
            {"hiera": dataclasses.replace(TINY.hiera, stages=(1, 1, 2), window_spec=(4, 4, 4))},
            "hiera.stages",
        ),
        (
            {"hiera": dataclasses.replace(TINY.hiera, window_spec=(3, 4, 4, 2))},
            "hiera.window_spec[0]",
        ),
    ],
)
def test_unsupported_value_raises_naming_the_field(changes, field):
    with pytest.raises(ValueError, match="not supported by samkit|must be a multiple") as e:
        dataclasses.replace(TINY, **changes)
    assert field in str(e.value)


def test_unsupported_value_says_what_is_supported():
    with pytest.raises(ValueError) as e:
        dataclasses.replace(TINY, soft_no_obj_ptr=True)
    assert (
        str(e.value) == "soft_no_obj_ptr=True is not supported by samkit (the official checkpoints use False)"
    )


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"global_att_blocks": (50,)}, "hiera.global_att_blocks"),
        ({"window_spec": (4, 4, 4)}, "hiera.window_spec"),
        ({"dim_mul": 1.5}, "dim_mul"),  # 8 -> 12 -> 18 channels for 4 heads
    ],
)
def test_hiera_config_checks_its_fields(changes, field):
    with pytest.raises(ValueError) as e:
        dataclasses.replace(TINY.hiera, **changes)
    assert field in str(e.value)


@pytest.mark.parametrize(
    "changes",
    [
        {"fpn_interp_model": "bilinear"},
        {"mem_fuser_kernel_size": 5},
        {"mask_downsampler_kernel": 5, "mask_downsampler_padding": 2},
        {"mask_downsampler_stride": 4, "mask_downsampler_kernel": 4},
        {"use_obj_ptrs_in_encoder": False, "pred_obj_scores": False, "fixed_no_obj_ptr": False},
        {"num_maskmem": 1, "memory_temporal_stride_for_eval": 2, "max_cond_frames_in_attn": 2},
        {"num_multimask_outputs": 1, "use_high_res_features_in_sam": False, "mem_dim": 8},
        {"dynamic_multimask_via_stability": False, "no_obj_embed_spatial": False},
    ],
)
def test_implemented_values_stay_free(changes):
    SAM2Model(dataclasses.replace(TINY, **changes))  # builds


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_registered_variant_builds(name):
    cfg = VARIANTS[name]
    assert dataclasses.replace(cfg) == cfg  # __post_init__ accepts it
    with torch.device("meta"):
        SAM2Model(cfg)
