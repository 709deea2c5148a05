"""Model configurations: frozen dataclasses and a registry of named variants.

Every official SAM 2 / SAM 2.1 checkpoint corresponds to one entry of :data:`VARIANTS`.
A variant states only what differs from its base, in the style of gpt-fast's ``ModelArgs``:
``SAM2_BASE`` holds everything the eight official models share, the SAM 2.1 base adds the
four switches that 2.1 introduced, and each size swaps in its own Hiera trunk.
"""

from __future__ import annotations

import math
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

    def __post_init__(self) -> None:
        errors = []
        if len(self.window_spec) != len(self.stages):
            errors.append(
                f"hiera.window_spec={self.window_spec!r} needs one window per stage "
                f"({len(self.stages)} stages: {self.stages!r})"
            )
        blocks = sum(self.stages)
        outside = [b for b in self.global_att_blocks if not 0 <= b < blocks]
        if outside:
            # the trunk would silently run those blocks nowhere
            errors.append(
                f"hiera.global_att_blocks={self.global_att_blocks!r} names blocks {outside} outside "
                f"the trunk's {blocks} blocks (0..{blocks - 1})"
            )
        dim, heads = self.embed_dim, self.num_heads
        for i in range(len(self.stages)):
            if heads < 1 or dim % heads:
                errors.append(
                    f"hiera stage {i} has {dim} channels for {heads} heads (embed_dim={self.embed_dim}, "
                    f"num_heads={self.num_heads}, dim_mul={self.dim_mul}, head_mul={self.head_mul}): "
                    "the heads must divide the channels"
                )
                break
            dim, heads = int(dim * self.dim_mul), int(heads * self.head_mul)
        if errors:
            raise ValueError("; ".join(errors))


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build a SAM 2 model; the field names follow the reference configs.

    The fields come in three groups. The first varies between the registered variants. The second
    is the same in every official variant, and samkit implements other values too (some within
    limits, checked by :meth:`__post_init__`). The third is fixed: samkit implements only the
    official value, and ``__post_init__`` rejects any other with a ``ValueError`` naming the field,
    rather than building a model that silently computes something else.
    """

    # --- vary between variants ----------------------------------------------------------------
    name: str = "custom"
    hiera: HieraConfig = field(default_factory=HieraConfig)
    image_size: int = 1024  # a multiple of 32
    d_model: int = 256  # FPN neck / prompt encoder / mask decoder width ("hidden_dim")
    decoder_heads: int = 8
    decoder_mlp_dim: int = 2048
    iou_head_hidden_dim: int = 256
    mask_in_chans: int = 16
    mem_attn_layers: int = 4
    mem_attn_ffn_dim: int = 2048
    mem_dim: int = 64  # divides d_model
    # the four switches SAM 2.1 introduced
    no_obj_embed_spatial: bool = False
    add_tpos_enc_to_obj_ptrs: bool = False
    proj_tpos_enc_in_obj_ptrs: bool = False
    use_signed_tpos_enc_to_obj_ptrs: bool = False
    # where the official weights live
    hf_repo: str | None = None
    checkpoint_filename: str | None = None

    # --- the same in every variant; other values implemented (limits checked) -----------------
    # image encoder
    fpn_top_down_levels: tuple[int, ...] = (2, 3)
    fpn_interp_model: str = "nearest"  # or "bilinear", "bicubic"
    # SAM heads
    decoder_depth: int = 2
    num_multimask_outputs: int = 3  # >= 1
    dynamic_multimask_via_stability: bool = True  # load_model(apply_postprocessing=False) clears it
    dynamic_multimask_stability_delta: float = 0.05
    dynamic_multimask_stability_thresh: float = 0.98
    iou_prediction_use_sigmoid: bool = True
    pred_obj_scores: bool = True  # needs use_obj_ptrs_in_encoder (the no-object pointer)
    pred_obj_scores_mlp: bool = True
    use_multimask_token_for_obj_ptr: bool = True
    use_high_res_features_in_sam: bool = True
    # memory attention
    mem_attn_heads: int = 1  # divides d_model
    rope_theta: float = 10000.0
    # memory encoder
    mem_fuser_layers: int = 2
    mem_fuser_kernel_size: int = 7  # odd
    mask_downsampler_kernel: int = 3  # each strided conv must divide the size by the stride
    mask_downsampler_stride: int = 2
    mask_downsampler_padding: int = 1
    mask_downsampler_total_stride: int = 16  # a power of the stride, equal to backbone_stride
    sigmoid_scale_for_mem_enc: float = 20.0
    sigmoid_bias_for_mem_enc: float = -10.0
    # tracking
    num_maskmem: int = 7  # >= 1
    memory_temporal_stride_for_eval: int = 1  # >= 1
    max_cond_frames_in_attn: int = -1  # -1 (all) or >= 2
    use_mask_input_as_output_without_sam: bool = True
    multimask_output_in_sam: bool = True
    multimask_min_pt_num: int = 0
    multimask_max_pt_num: int = 1
    multimask_output_for_tracking: bool = True
    use_obj_ptrs_in_encoder: bool = True
    max_obj_ptrs_in_encoder: int = 16
    only_obj_ptrs_in_the_past_for_eval: bool = True
    fixed_no_obj_ptr: bool = True  # needs pred_obj_scores and use_obj_ptrs_in_encoder
    use_mlp_for_obj_ptr_proj: bool = True

    # --- fixed: validated (samkit implements only these values) --------------------------------
    backbone_stride: int = 16
    scalp: int = 1  # with a four-stage trunk: the heads see three levels
    directly_add_no_mem_embed: bool = True
    soft_no_obj_ptr: bool = False

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
        errors = [*_fixed_errors(self), *_limit_errors(self)]
        if errors:
            raise ValueError("; ".join(errors))


def _unsupported(name: str, value, supported: str) -> str:
    return f"{name}={value!r} is not supported by samkit ({supported})"


# fixed fields: the one value samkit implements (the official checkpoints' value)
_FIXED = {
    "backbone_stride": 16,
    "scalp": 1,
    "directly_add_no_mem_embed": True,
    "soft_no_obj_ptr": False,
}


def _fixed_errors(cfg: ModelConfig) -> list[str]:
    errors = [
        _unsupported(name, getattr(cfg, name), f"the official checkpoints use {value!r}")
        for name, value in _FIXED.items()
        if getattr(cfg, name) != value
    ]
    h = cfg.hiera
    # the neck and the heads expect levels at strides 4, 8, 16 (and 32, dropped by the scalp)
    if len(h.stages) != 4:
        errors.append(_unsupported("hiera.stages", h.stages, "four stages, as in the official trunks"))
    if h.q_pool != len(h.stages) - 1:
        errors.append(_unsupported("hiera.q_pool", h.q_pool, f"{len(h.stages) - 1}: one pooling per stage"))
    if tuple(h.q_stride) != (2, 2):
        errors.append(_unsupported("hiera.q_stride", h.q_stride, "the official checkpoints use (2, 2)"))
    return errors


def _limit_errors(cfg: ModelConfig) -> list[str]:
    """Fields samkit implements for other values than the official ones, but not for all."""
    errors = []
    if cfg.image_size % (cfg.backbone_stride * 2) != 0:
        errors.append(f"image_size must be a multiple of {cfg.backbone_stride * 2}, got {cfg.image_size}")
    elif cfg.hiera.window_spec and (cfg.image_size // 4) % cfg.hiera.window_spec[0]:
        errors.append(
            f"image_size={cfg.image_size} with hiera.window_spec[0]={cfg.hiera.window_spec[0]} is not "
            f"supported by samkit (the first stage's {cfg.image_size // 4}-pixel map must be a whole "
            "number of windows)"
        )
    checks = [
        (
            "fpn_interp_model",
            cfg.fpn_interp_model in ("nearest", "bilinear", "bicubic"),
            "use 'nearest' (official), 'bilinear' or 'bicubic'",
        ),
        (
            "num_multimask_outputs",
            cfg.num_multimask_outputs >= 1,
            "1 or more; the official checkpoints use 3",
        ),
        (
            "decoder_heads",
            cfg.decoder_heads >= 1 and (cfg.d_model // 2) % cfg.decoder_heads == 0,
            f"a divisor of d_model / 2 = {cfg.d_model // 2}",
        ),
        (
            "mem_attn_heads",
            cfg.mem_attn_heads >= 1 and cfg.d_model % cfg.mem_attn_heads == 0,
            f"a divisor of d_model = {cfg.d_model}",
        ),
        (
            "mem_dim",
            cfg.mem_dim >= 1 and cfg.d_model % cfg.mem_dim == 0,
            f"a divisor of d_model = {cfg.d_model}: an object pointer becomes d_model / mem_dim tokens",
        ),
        (
            "mem_fuser_kernel_size",
            cfg.mem_fuser_kernel_size % 2 == 1,
            "an odd size, which keeps the map's size; the official checkpoints use 7",
        ),
        ("num_maskmem", cfg.num_maskmem >= 1, "1 or more; the official checkpoints use 7"),
        (
            "memory_temporal_stride_for_eval",
            cfg.memory_temporal_stride_for_eval >= 1,
            "1 or more; the official checkpoints use 1",
        ),
        (
            "max_cond_frames_in_attn",
            cfg.max_cond_frames_in_attn == -1 or cfg.max_cond_frames_in_attn >= 2,
            "-1 (all) or 2 or more",
        ),
        (
            "pred_obj_scores",
            not cfg.pred_obj_scores or cfg.use_obj_ptrs_in_encoder,
            "with use_obj_ptrs_in_encoder=False there is no no-object pointer: set pred_obj_scores=False "
            "and fixed_no_obj_ptr=False too",
        ),
        (
            "fixed_no_obj_ptr",
            not cfg.fixed_no_obj_ptr or (cfg.pred_obj_scores and cfg.use_obj_ptrs_in_encoder),
            "it needs pred_obj_scores=True and use_obj_ptrs_in_encoder=True, as in the reference; "
            "set fixed_no_obj_ptr=False with them off",
        ),
    ]
    errors += [_unsupported(name, getattr(cfg, name), why) for name, ok, why in checks if not ok]
    # the mask downsampler: strided convs down to the top feature map's size
    k, s, p, total = (
        cfg.mask_downsampler_kernel,
        cfg.mask_downsampler_stride,
        cfg.mask_downsampler_padding,
        cfg.mask_downsampler_total_stride,
    )
    if s < 2 or total != cfg.backbone_stride or s ** round(math.log(total, s)) != total:
        errors.append(
            f"mask_downsampler_total_stride={total} with mask_downsampler_stride={s} is not supported "
            f"by samkit (the total stride must be a power of the stride (>= 2) and equal "
            f"backbone_stride={cfg.backbone_stride}; the official checkpoints use 16 and 2)"
        )
    if not -s <= 2 * p - k < 0:
        errors.append(
            f"mask_downsampler_kernel={k} with mask_downsampler_padding={p} and mask_downsampler_stride={s} "
            "is not supported by samkit (each strided conv must divide the map's size by the stride: "
            "-stride <= 2 * padding - kernel < 0; the official checkpoints use 3, 1 and 2)"
        )
    return errors


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
            f"model name must be a non-empty string, got {name!r}; valid names: {', '.join(variant_names())}"
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
    raise ValueError(f"unknown model {name!r}; valid names: {', '.join(variant_names())}")


def get_config(name: str | ModelConfig) -> ModelConfig:
    """Return the :class:`ModelConfig` for a variant name (any accepted spelling) or a config."""
    if isinstance(name, ModelConfig):
        return name
    return VARIANTS[resolve_name(name)]
