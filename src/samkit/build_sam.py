"""Meta's model builders, for code written against the reference ``sam2`` package.

``from samkit.build_sam import build_sam2, build_sam2_video_predictor`` takes the place of
``from sam2.build_sam import ...``: the same functions and arguments, so notebooks and tools such as
``tools/vos_inference.py`` run with only their import lines changed. They build samkit objects:

* :func:`build_sam2` / :func:`build_sam2_hf` return a :class:`~samkit.modeling.SAM2Model` for
  :class:`~samkit.ImagePredictor` and :class:`~samkit.AutomaticMaskGenerator` (also importable as
  ``SAM2ImagePredictor`` and ``SAM2AutomaticMaskGenerator`` from :mod:`samkit`).
* :func:`build_sam2_video_predictor` / :func:`build_sam2_video_predictor_hf` return a
  :class:`~samkit.VideoPredictor` set up as the reference's builder sets up its predictor.

What each argument becomes:

* ``config_file``: Meta's config names (``configs/sam2.1/sam2.1_hiera_t.yaml``, ``sam2_hiera_l.yaml``,
  with or without ``configs/``, the folder or ``.yaml``) name the matching samkit variant; samkit
  names (``sam2.1-hiera-tiny``) and :class:`~samkit.ModelConfig` objects work too. Other yaml files
  (custom or training configs) are refused: samkit does not read yaml.
* ``ckpt_path``: an official-layout ``.pt`` file; ``None`` leaves random weights, as the reference does.
* ``apply_postprocessing``: as in the reference. For images it switches the mask decoder's "dynamic
  multimask via stability" fallback (the config's ``dynamic_multimask_via_stability``, which
  ``load_model(..., apply_postprocessing=False)`` also switches off). For video it also sets the
  predictor's ``fill_hole_area`` (8 or 0) and ``binarize_mask_from_pts_for_mem_enc``.
* ``hydra_overrides_extra``: the overrides Meta's code passes (see :data:`SUPPORTED_OVERRIDES`),
  e.g. ``++model.non_overlap_masks=true`` from ``tools/vos_inference.py``; anything else raises
  ValueError. As in the reference, the post-processing settings are applied after them.
* ``vos_optimized``: the reference's compiled VOS predictor; here ``load_model(..., compile=True)``.
* ``mode``: only ``"eval"`` (samkit builds inference models).

The video builder keeps every frame's state (``keep_all_outputs=True``) as the reference does, so a
correction click on any frame starts from that frame's previous mask; pass ``keep_all_outputs=False``
for samkit's bounded memory. Further keyword arguments go to :func:`samkit.load_model`
(``precision``, ``cuda_graphs``) and to :class:`~samkit.VideoPredictor` (``batch_objects``,
``progress``, ...); others are ignored with a warning (the reference ignores them silently).
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import tempfile
import warnings
from collections.abc import Sequence
from typing import Any

import torch

from .checkpoints import build_model, download_checkpoint, load_model
from .configs import ModelConfig, get_config, resolve_name
from .modeling import SAM2Model
from .predictors.video import VideoPredictor

__all__ = [
    "HF_MODEL_ID_TO_FILENAMES",
    "SUPPORTED_OVERRIDES",
    "build_sam2",
    "build_sam2_hf",
    "build_sam2_video_predictor",
    "build_sam2_video_predictor_hf",
    "config_from_name",
]

# The official model ids and their reference config names (the reference's table, derived here).
HF_MODEL_ID_TO_FILENAMES: dict[str, tuple[str, str]] = {
    f"facebook/{family}-hiera-{size}": (
        f"configs/{family}/{family}_hiera_{letter}.yaml",
        f"{family}_hiera_{size.replace('-', '_')}.pt",
    )
    for family in ("sam2", "sam2.1")
    for size, letter in (("tiny", "t"), ("small", "s"), ("base-plus", "b+"), ("large", "l"))
}

# Meta's config names: [/][configs/][<family folder>/]<family>_hiera_<t|s|b+|l>[.yaml]
_META_CONFIG = re.compile(
    r"^/?(?:configs/)?(?:(?P<folder>sam2|sam2\.1)/)?(?P<family>sam2|sam2\.1)_hiera_(?P<size>t|s|b\+|l)(?:\.yaml)?$"
)

# override key (after "model.") -> (what it sets, value type). "config" keys are ModelConfig
# fields, "video" keys VideoPredictor arguments, "compile" the compiled path.
_OVERRIDES: dict[str, tuple[str, str, type]] = {
    "sam_mask_decoder_extra_args.dynamic_multimask_via_stability": (
        "config",
        "dynamic_multimask_via_stability",
        bool,
    ),
    "sam_mask_decoder_extra_args.dynamic_multimask_stability_delta": (
        "config",
        "dynamic_multimask_stability_delta",
        float,
    ),
    "sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh": (
        "config",
        "dynamic_multimask_stability_thresh",
        float,
    ),
    "image_size": ("config", "image_size", int),
    "compile_image_encoder": ("compile", "compile", bool),
    "binarize_mask_from_pts_for_mem_enc": ("video", "binarize_mask_from_pts_for_mem_enc", bool),
    "non_overlap_masks": ("video", "non_overlap_masks", bool),
    "fill_hole_area": ("video", "fill_hole_area", int),
    "clear_non_cond_mem_around_input": ("video", "clear_non_cond_mem_around_input", bool),
    "add_all_frames_to_correct_as_cond": ("video", "add_all_frames_to_correct_as_cond", bool),
}
SUPPORTED_OVERRIDES: tuple[str, ...] = tuple(f"++model.{k}" for k in _OVERRIDES)

# what the reference's builders add when apply_postprocessing=True (after the caller's overrides)
_POSTPROCESSING_IMAGE = (
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
)
_POSTPROCESSING_VIDEO = _POSTPROCESSING_IMAGE + (
    "++model.binarize_mask_from_pts_for_mem_enc=true",
    "++model.fill_hole_area=8",
)

# the reference's defaults for what the overrides set (SAM2VideoPredictor's and SAM2Base's
# arguments, MaskDecoder's for the decoder's extra arguments), before any override
_REFERENCE_VIDEO_DEFAULTS = {
    "fill_hole_area": 0,
    "non_overlap_masks": False,
    "clear_non_cond_mem_around_input": False,
    "add_all_frames_to_correct_as_cond": False,
    "binarize_mask_from_pts_for_mem_enc": False,
}
_LOAD_KWARGS = ("precision", "cuda_graphs")
# samkit's own VideoPredictor settings; those the reference sets through overrides are not among them
_VIDEO_KWARGS = tuple(
    p
    for p in inspect.signature(VideoPredictor.__init__).parameters
    if p not in ("self", "model", *_REFERENCE_VIDEO_DEFAULTS)
)


def config_from_name(config_file: str | os.PathLike | ModelConfig) -> ModelConfig:
    """The samkit :class:`ModelConfig` for a reference config name (``configs/sam2.1/sam2.1_hiera_t.yaml``,
    ``sam2_hiera_l.yaml``, ...), a samkit variant name or a ModelConfig."""
    if isinstance(config_file, ModelConfig):
        return config_file
    if not isinstance(config_file, (str, os.PathLike)):
        raise TypeError(f"config_file must be a config name, got {type(config_file).__name__}")
    name = os.fspath(config_file).strip().replace("\\", "/")
    m = _META_CONFIG.match(name)
    if m:
        if m["folder"] is not None and m["folder"] != m["family"]:
            raise ValueError(
                f"unknown config {name!r}: {m['family']}_hiera_{m['size']}.yaml lives in configs/{m['family']}/"
            )
        return get_config(f"{m['family']}_hiera_{m['size']}")
    if "/" not in name.removeprefix("facebook/") and not name.endswith(".yaml"):
        try:
            return get_config(resolve_name(name))
        except ValueError:
            pass
    known = ", ".join(cfg for cfg, _ in HF_MODEL_ID_TO_FILENAMES.values())
    raise ValueError(
        f"unknown config {name!r}: samkit builds the official SAM 2 / 2.1 models from their config names "
        f"({known}; with or without 'configs/<folder>/' and '.yaml') or samkit variant names; it does "
        "not read yaml files, so custom or training configs are not supported"
    )


def _parse_value(key: str, raw: str, kind: type) -> Any:
    text = raw.strip().strip("'\"")
    try:
        if kind is bool:
            low = text.lower()
            if low not in ("true", "false"):
                raise ValueError
            return low == "true"
        if kind is int:
            return int(text)
        return float(text)
    except ValueError:
        raise ValueError(
            f"hydra override model.{key}={raw!r}: expected {'true or false' if kind is bool else kind.__name__}"
        ) from None


def _parse_overrides(overrides: Sequence[str], video: bool) -> list[tuple[str, str, Any]]:
    """[(target, field, value)] in order; unsupported overrides raise ValueError."""
    if isinstance(overrides, str):
        raise TypeError(
            "hydra_overrides_extra must be a list of strings, e.g. ['++model.non_overlap_masks=true']"
        )
    supported = "\n  ".join(SUPPORTED_OVERRIDES)
    parsed = []
    for item in overrides:
        text = str(item).strip()
        key, sep, raw = text.lstrip("+").partition("=")
        key = key.strip()
        entry = _OVERRIDES.get(key.removeprefix("model.")) if key.startswith("model.") and sep else None
        if entry is None:
            raise ValueError(
                f"unsupported hydra override {text!r}: samkit builds its models from dataclass configs, "
                f"not hydra, and maps only these overrides (value true/false or a number):\n  {supported}"
            )
        target, field, kind = entry
        short = key.removeprefix("model.")
        if target == "video" and not video and field != "binarize_mask_from_pts_for_mem_enc":
            raise ValueError(
                f"hydra override {text!r} sets the video predictor; pass it to build_sam2_video_predictor "
                "(the reference's build_sam2 refuses it too)"
            )
        parsed.append((target, field, _parse_value(short, raw, kind)))
    return parsed


def _check_common(mode: str, kwargs: dict, allowed: Sequence[str], builder: str) -> None:
    if mode != "eval":
        raise ValueError(f"{builder}: samkit builds inference models only; mode must be 'eval', got {mode!r}")
    ignored = sorted(k for k in kwargs if k not in allowed)
    if ignored:
        hint = "".join(
            f"; set {k} with hydra_overrides_extra=['++model.{k}=...']"
            for k in ignored
            if k in _REFERENCE_VIDEO_DEFAULTS
        )
        warnings.warn(
            f"{builder} ignores the keyword argument(s) {', '.join(ignored)}, as the reference does "
            f"(samkit's own: {', '.join(allowed)}){hint}",
            stacklevel=3,
        )


def _load(cfg: ModelConfig, ckpt_path, device, compile: bool, load_kw: dict) -> SAM2Model:
    """load_model, or random weights (the reference's ckpt_path=None) with the same settings."""
    if ckpt_path is not None:
        return load_model(cfg, checkpoint=ckpt_path, device=device, compile=compile, **load_kw)
    if not compile and not load_kw:
        return build_model(cfg, device)
    # random weights with non-default runtime settings: through load_model, which applies them
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "random.pt")
        torch.save({"model": build_model(cfg, "cpu").state_dict()}, path)
        return load_model(cfg, checkpoint=path, device=device, compile=compile, **load_kw)


def _configure(config_file, overrides: list[str], video: bool) -> tuple[ModelConfig, bool, dict]:
    """Apply the overrides in order to the reference's defaults: (model config, compile, video args)."""
    # without overrides the reference's decoder has no stability fallback (MaskDecoder's default)
    cfg = dataclasses.replace(config_from_name(config_file), dynamic_multimask_via_stability=False)
    compile, video_args = False, dict(_REFERENCE_VIDEO_DEFAULTS)
    for target, field, value in _parse_overrides(overrides, video=video):
        if target == "config":
            cfg = dataclasses.replace(cfg, **{field: value})
        elif target == "compile":
            compile = compile or value
        else:
            video_args[field] = value
    return cfg, compile, video_args


def build_sam2(
    config_file,
    ckpt_path=None,
    device="cuda",
    mode="eval",
    hydra_overrides_extra=(),
    apply_postprocessing=True,
    **kwargs,
) -> SAM2Model:
    """Build a SAM 2 model as the reference's ``sam2.build_sam.build_sam2`` does (see the module
    docstring for how each argument maps); returns a samkit model for ImagePredictor and
    AutomaticMaskGenerator. ``precision=`` and ``cuda_graphs=`` go to :func:`samkit.load_model`."""
    _check_common(mode, kwargs, _LOAD_KWARGS, "build_sam2")
    overrides = list(hydra_overrides_extra or [])
    if apply_postprocessing:
        overrides += _POSTPROCESSING_IMAGE
    # binarize_mask_from_pts_for_mem_enc is accepted (as by the reference) and only matters to video
    cfg, compile, _ = _configure(config_file, overrides, video=False)
    load_kw = {k: v for k, v in kwargs.items() if k in _LOAD_KWARGS}
    return _load(cfg, ckpt_path, device, compile, load_kw)


def build_sam2_video_predictor(
    config_file,
    ckpt_path=None,
    device="cuda",
    mode="eval",
    hydra_overrides_extra=(),
    apply_postprocessing=True,
    vos_optimized=False,
    **kwargs,
) -> VideoPredictor:
    """Build a video predictor as the reference's ``build_sam2_video_predictor`` does (see the module
    docstring); returns a :class:`~samkit.VideoPredictor`. Keyword arguments of VideoPredictor (e.g.
    ``progress``, ``keep_all_outputs``) and ``precision=``/``cuda_graphs=`` are passed on."""
    _check_common(mode, kwargs, _LOAD_KWARGS + _VIDEO_KWARGS, "build_sam2_video_predictor")
    overrides = list(hydra_overrides_extra or [])
    if apply_postprocessing:
        overrides += _POSTPROCESSING_VIDEO
    cfg, compile, video_args = _configure(config_file, overrides, video=True)
    load_kw = {k: v for k, v in kwargs.items() if k in _LOAD_KWARGS}
    video_args.update({k: v for k, v in kwargs.items() if k in _VIDEO_KWARGS})
    video_args.setdefault("keep_all_outputs", True)
    model = _load(cfg, ckpt_path, device, compile or bool(vos_optimized), load_kw)
    return VideoPredictor(model, **video_args)


def _hf_download(model_id: str) -> tuple[ModelConfig, str]:
    if model_id not in HF_MODEL_ID_TO_FILENAMES:
        raise ValueError(f"unknown model id {model_id!r}; known ids: {', '.join(HF_MODEL_ID_TO_FILENAMES)}")
    name = resolve_name(model_id)
    return get_config(name), str(download_checkpoint(name))


def build_sam2_hf(model_id: str, **kwargs) -> SAM2Model:
    """:func:`build_sam2` on the official weights of ``model_id`` (``facebook/sam2.1-hiera-large``...),
    downloaded once into the Hugging Face cache."""
    cfg, ckpt_path = _hf_download(model_id)
    return build_sam2(config_file=cfg, ckpt_path=ckpt_path, **kwargs)


def build_sam2_video_predictor_hf(model_id: str, **kwargs) -> VideoPredictor:
    """:func:`build_sam2_video_predictor` on the official weights of ``model_id``."""
    cfg, ckpt_path = _hf_download(model_id)
    return build_sam2_video_predictor(config_file=cfg, ckpt_path=ckpt_path, **kwargs)
