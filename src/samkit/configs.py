"""Model configurations: frozen dataclasses and a registry of named variants.

Every official SAM 2 / SAM 2.1 checkpoint corresponds to one entry of :data:`VARIANTS`.
A variant states only what differs from its base, in the style of gpt-fast's ``ModelArgs``:
``SAM2_BASE`` holds everything the eight official models share, the SAM 2.1 base adds the
three switches that 2.1 introduced, and each size swaps in its own Hiera trunk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

__all__ = [
    "HieraConfig",
    "ModelConfig",
    "VARIANTS",
    "get_config",
    "resolve_name",
    "variant_names",
]


@dataclass(frozen=True)
class HieraConfig:
    """Hierarchical ViT (Hiera) trunk of the image encoder."""

    embed_dim: int = 96
    num_heads: int = 1
    stages: tuple[int, ...] = (1, 2, 7, 2)
    global_att_blocks: tuple[int, ...] = (5, 7, 9)
    window_spec: tuple[int, ...] = (8, 4, 14, 7)
    window_pos_embed_bkg_spatial_size: tuple[int, int] = (7, 7)
    q_pool: int = 3
    q_stride: tuple[int, int] = (2, 2)
    dim_mul: float = 2.0
    head_mul: float = 2.0
    mlp_ratio: float = 4.0

    @property
    def channel_list(self) -> tuple[int, ...]:
        """Channels of each stage's output, lowest resolution first (as the FPN neck lists them)."""
        dims, dim = [], self.embed_dim
        for i in range(len(self.stages)):
            dims.append(dim)
            if i < len(self.stages) - 1:
                dim = int(dim * self.dim_mul)
        return tuple(reversed(dims))


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build a SAM 2 model; the field names follow the reference configs."""

    name: str = "custom"
    hiera: HieraConfig = field(default_factory=HieraConfig)
    image_size: int = 1024
    backbone_stride: int = 16
    d_model: int = 256  # FPN neck / prompt encoder / mask decoder width ("hidden_dim")
    fpn_top_down_levels: tuple[int, ...] = (2, 3)
    fpn_interp_model: str = "nearest"
    scalp: int = 1
    # SAM heads
    decoder_depth: int = 2
    decoder_heads: int = 8
    decoder_mlp_dim: int = 2048
    iou_head_hidden_dim: int = 256
    mask_in_chans: int = 16
    num_multimask_outputs: int = 3
    dynamic_multimask_via_stability: bool = True
    dynamic_multimask_stability_delta: float = 0.05
    dynamic_multimask_stability_thresh: float = 0.98
    # memory attention
    mem_attn_layers: int = 4
    mem_attn_heads: int = 1
    mem_attn_ffn_dim: int = 2048
    rope_theta: float = 10000.0
    # memory encoder
    mem_dim: int = 64
    mem_fuser_layers: int = 2
    mem_fuser_kernel_size: int = 7
    mask_downsampler_kernel: int = 3
    mask_downsampler_stride: int = 2
    mask_downsampler_padding: int = 1
    mask_downsampler_total_stride: int = 16
    # tracking
    num_maskmem: int = 7
    sigmoid_scale_for_mem_enc: float = 20.0
    sigmoid_bias_for_mem_enc: float = -10.0
    use_mask_input_as_output_without_sam: bool = True
    directly_add_no_mem_embed: bool = True
    use_high_res_features_in_sam: bool = True
    multimask_output_in_sam: bool = True
    multimask_min_pt_num: int = 0
    multimask_max_pt_num: int = 1
    multimask_output_for_tracking: bool = True
    use_multimask_token_for_obj_ptr: bool = True
    iou_prediction_use_sigmoid: bool = True
    use_obj_ptrs_in_encoder: bool = True
    max_obj_ptrs_in_encoder: int = 16
    add_tpos_enc_to_obj_ptrs: bool = False
    proj_tpos_enc_in_obj_ptrs: bool = False
    use_signed_tpos_enc_to_obj_ptrs: bool = False
    only_obj_ptrs_in_the_past_for_eval: bool = True
    pred_obj_scores: bool = True
    pred_obj_scores_mlp: bool = True
    fixed_no_obj_ptr: bool = True
    soft_no_obj_ptr: bool = False
    use_mlp_for_obj_ptr_proj: bool = True
    no_obj_embed_spatial: bool = False
    memory_temporal_stride_for_eval: int = 1
    max_cond_frames_in_attn: int = -1
    # where the official weights live
    hf_repo: str | None = None
    checkpoint_filename: str | None = None

    @property
    def embedding_size(self) -> int:
        """Side of the lowest-resolution feature map the SAM heads see (64 at 1024 px)."""
        return self.image_size // self.backbone_stride

    @property
    def feature_sizes(self) -> tuple[tuple[int, int], ...]:
        """(H, W) of the three feature levels the heads use: stride 4, 8 and 16."""
        s = self.embedding_size
        return ((4 * s, 4 * s), (2 * s, 2 * s), (s, s))

    def __post_init__(self) -> None:
        if self.image_size % (self.backbone_stride * 2) != 0:
            raise ValueError(
                f"image_size must be a multiple of {self.backbone_stride * 2}, got {self.image_size}"
            )
        if self.hiera.channel_list != tuple(self.hiera.channel_list):  # pragma: no cover - sanity
            raise ValueError("bad channel list")


# ---------------------------------------------------------------------------------------------
# The registry. SAM2_BASE: what the official SAM 2 configs share (tiny trunk by default).
SAM2_BASE = ModelConfig()
SAM21_BASE = replace(
    SAM2_BASE,
    no_obj_embed_spatial=True,
    add_tpos_enc_to_obj_ptrs=True,
    proj_tpos_enc_in_obj_ptrs=True,
    use_signed_tpos_enc_to_obj_ptrs=True,
)

_TRUNKS = {
    "tiny": HieraConfig(),
    "small": HieraConfig(stages=(1, 2, 11, 2), global_att_blocks=(7, 10, 13)),
    "base-plus": HieraConfig(
        embed_dim=112,
        num_heads=2,
        stages=(2, 3, 16, 3),
        global_att_blocks=(12, 16, 20),
        window_pos_embed_bkg_spatial_size=(14, 14),
    ),
    "large": HieraConfig(
        embed_dim=144,
        num_heads=2,
        stages=(2, 6, 36, 4),
        global_att_blocks=(23, 33, 43),
        window_spec=(8, 4, 16, 8),
    ),
}


def _variant(family: str, size: str) -> ModelConfig:
    base = SAM2_BASE if family == "sam2" else SAM21_BASE
    name = f"{family}-hiera-{size}"
    filename = f"{family}_hiera_{size.replace('-', '_')}.pt"
    return replace(
        base, name=name, hiera=_TRUNKS[size], hf_repo=f"facebook/{name}", checkpoint_filename=filename
    )


VARIANTS: dict[str, ModelConfig] = {
    cfg.name: cfg for cfg in (_variant(f, s) for f in ("sam2", "sam2.1") for s in _TRUNKS)
}

# Small configs for fast unit tests and examples; they have no official weights.
VARIANTS["test-tiny"] = replace(
    SAM21_BASE,
    name="test-tiny",
    hiera=HieraConfig(
        embed_dim=8,
        num_heads=1,
        stages=(1, 1, 2, 1),
        global_att_blocks=(2,),
        window_spec=(4, 4, 4, 2),
        window_pos_embed_bkg_spatial_size=(4, 4),
    ),
    image_size=128,
    d_model=32,
    decoder_heads=4,
    decoder_mlp_dim=64,
    iou_head_hidden_dim=32,
    mask_in_chans=8,
    mem_attn_layers=2,
    mem_attn_ffn_dim=64,
    mem_dim=16,
)


def variant_names() -> list[str]:
    """Names of the official variants (those with downloadable weights)."""
    return [n for n, c in VARIANTS.items() if c.hf_repo]


def resolve_name(name: str) -> str:
    """Map any accepted spelling to the registry key.

    Accepts ``sam2.1-hiera-tiny``, ``sam2.1_hiera_tiny``, ``sam2.1_hiera_tiny.pt``,
    ``facebook/sam2.1-hiera-tiny``, ``sam2_hiera_b+`` and the short size letters of the
    reference's yaml names (``t``, ``s``, ``b+``, ``l``).
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(
            f"model name must be a non-empty string, got {name!r}; valid names: {', '.join(VARIANTS)}"
        )
    key = name.strip().lower()
    key = key.split("/")[-1]
    key = re.sub(r"\.(pt|pth|yaml)$", "", key)
    key = key.replace("_", "-").replace("b+", "base-plus").replace("base-plus-plus", "base-plus")
    key = re.sub(r"-hiera-(t)$", "-hiera-tiny", key)
    key = re.sub(r"-hiera-(s)$", "-hiera-small", key)
    key = re.sub(r"-hiera-(l)$", "-hiera-large", key)
    if key in VARIANTS:
        return key
    raise ValueError(f"unknown model {name!r}; valid names: {', '.join(VARIANTS)}")


def get_config(name: str | ModelConfig) -> ModelConfig:
    """Return the :class:`ModelConfig` for a variant name (any accepted spelling) or a config."""
    if isinstance(name, ModelConfig):
        return name
    return VARIANTS[resolve_name(name)]
