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
