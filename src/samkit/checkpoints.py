"""Building models and loading official checkpoints (local files or the Hugging Face hub).

Checkpoints keep Meta's layout, ``{"model": state_dict}``, and key names; they load with
``strict=True``. Any renaming lives in :func:`filter_state_dict` alone.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

import torch

from .configs import VARIANTS, ModelConfig, get_config, resolve_name, variant_names
from .modeling import SAM2Model
from .policy import decide

__all__ = [
    "CheckpointError",
    "DownloadError",
    "apply_precision",
    "build_model",
    "cached_checkpoint",
    "checkpoint_variant",
    "download_checkpoint",
    "filter_state_dict",
    "load_model",
    "load_state_dict_file",
    "resolve_device",
    "weights_sha256",
]


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable, or does not fit the requested model.

    ``summary`` is the first line of the message; ``details`` the rest (the keys that do not fit);
    ``variant`` the official variant the checkpoint's shapes match, when it matches one."""

    def __init__(self, summary: str, details: str = "", variant: str | None = None) -> None:
        super().__init__(summary + (f"\n{details}" if details else ""))
        self.summary, self.details, self.variant = summary, details, variant


class DownloadError(RuntimeError):
    """Official weights could not be fetched and are not in the local cache. ``cli_message`` says the
    same for a command-line user (flags instead of Python arguments)."""

    def __init__(self, message: str, cli_message: str | None = None) -> None:
        super().__init__(message)
        self.cli_message = cli_message or message


def _hub_unreachable(timeout: float = 2.0) -> str | None:
    """Why the Hugging Face hub cannot be reached (offline mode, or no TCP connection to its host within
    ``timeout`` seconds, one attempt), or None when it can. Checked before downloading: offline,
    huggingface_hub's own retries take tens of seconds to give up."""
    import socket
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    url = urlsplit(constants.ENDPOINT)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as e:
        return f"cannot reach {host}:{port}: {e.strerror or type(e).__name__}"


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` picks CUDA when present, else the CPU. Unknown or absent devices raise ValueError."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"unknown device {device!r} (use 'cpu', 'cuda', 'cuda:N' or 'mps')") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available on this machine")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(
            f"device {device!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist"
        )
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"device {device!r} requested but MPS is not available on this machine")
    return dev


def build_model(config: str | ModelConfig, device: str | torch.device | None = "cpu") -> SAM2Model:
    """A randomly initialized model of the given variant, in eval mode."""
    model = SAM2Model(get_config(config))
    return model.to(resolve_device(device)).eval()


# --- reading checkpoints ---------------------------------------------------------------------


def filter_state_dict(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The one place where key names are adapted: strips the ``module.`` prefix that
    DistributedDataParallel training adds. Official checkpoints pass through unchanged."""
    if sd and all(k.startswith("module.") for k in sd):
        return {k[len("module.") :]: v for k, v in sd.items()}
    return dict(sd)


def load_state_dict_file(path: str | os.PathLike, mmap: bool = False) -> dict[str, torch.Tensor]:
    """Read a ``.pt`` checkpoint (``{"model": state_dict}`` or a bare state dict) onto the CPU.
    ``mmap``: map the file instead of reading it (tensors are read only when touched: for shapes)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(f"checkpoint file not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"checkpoint path is a directory, expected a .pt file: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # pickle, zip, EOF and torch errors all mean the same to a user
        raise CheckpointError(
            f"could not read checkpoint {path}: the file is corrupt, truncated or not a PyTorch checkpoint "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        ) from None
    if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a SAM 2 state dict (expected {{'model': state_dict}})")
    return filter_state_dict(obj)


def _meta_model(cfg: ModelConfig) -> SAM2Model:
    """The model's structure without memory or random init (parameters on the meta device)."""
    with torch.device("meta"):
        return SAM2Model(cfg)


def _shapes(model: SAM2Model) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _expected_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    return _shapes(_meta_model(cfg))


def _guess_variant(sd: Mapping[str, torch.Tensor]) -> str | None:
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    for name in variant_names():
        if _expected_shapes(VARIANTS[name]) == shapes:
            return name
    return None


def _check_keys(
    cfg: ModelConfig,
    sd: Mapping[str, torch.Tensor],
    source: str,
    expected: dict[str, tuple[int, ...]],
) -> None:
    """Raise naming missing/unexpected/mis-shaped keys (and the variant the checkpoint looks like)."""
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    wrong = [
        f"{k} {tuple(sd[k].shape)} != {expected[k]}"
        for k in expected
        if k in sd and tuple(sd[k].shape) != expected[k]
    ]
    if not (missing or unexpected or wrong):
        return
    guess = _guess_variant(sd)
    summary = (
        f"checkpoint {source} is a {guess!r} checkpoint, not {cfg.name!r}: "
        f"load it with load_model({guess!r}, checkpoint=...)"
        if guess
        else f"checkpoint {source} does not match model {cfg.name!r} (nor any official variant)"
    )
    lines = []
    for label, keys in (
        ("missing keys", missing),
        ("unexpected keys", unexpected),
        ("shape mismatches", wrong),
    ):
        if keys:
            more = f" ... and {len(keys) - 5} more" if len(keys) > 5 else ""
            lines.append(f"  {label} ({len(keys)}): {', '.join(keys[:5])}{more}")
    raise CheckpointError(summary, "\n".join(lines), guess)


def checkpoint_variant(path: str | os.PathLike) -> str | None:
    """The official variant whose shapes a checkpoint file has (None when it matches none)."""
    # mapped: only the shapes are looked at, so the weights are not read twice before loading
    return _guess_variant(load_state_dict_file(path, mmap=True))


# --- the hub -------------------------------------------------------------------------------


def cached_checkpoint(name: str) -> Path | None:
    """Path of the official checkpoint in the Hugging Face cache, or None when not downloaded."""
    cfg = VARIANTS[resolve_name(name)]
    if not cfg.hf_repo:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub is a dependency
        return None
    found = try_to_load_from_cache(cfg.hf_repo, cfg.checkpoint_filename)
    return Path(found) if isinstance(found, str) and os.path.exists(found) else None


def download_checkpoint(name: str, force: bool = False) -> Path:
    """Fetch the official checkpoint of a variant into the Hugging Face cache (once) and return its path."""
    cfg = VARIANTS[resolve_name(name)]
    if not cfg.hf_repo:
        raise DownloadError(f"{cfg.name!r} is a test configuration with no official weights")
    if not force:
        cached = cached_checkpoint(cfg.name)
        if cached is not None:
            return cached
    from huggingface_hub import hf_hub_download

    def fail(reason: str) -> DownloadError:
        what = f"{cfg.name} is not in the local cache and could not be downloaded ({reason})"
        file = f"path/to/{cfg.checkpoint_filename}"
        return DownloadError(
            f"{what}. Offline, pass the official file: load_model({cfg.name!r}, checkpoint={file!r}); "
            f"online, samkit.download_checkpoint({cfg.name!r}) fetches it into the cache.",
            f"{what}: pass --checkpoint {file} (an official {cfg.checkpoint_filename}), "
            f"or run `samkit download {cfg.name}` when online",
        )

    unreachable = _hub_unreachable()
    if unreachable is not None:
        raise fail(unreachable)
    try:
        return Path(
            hf_hub_download(repo_id=cfg.hf_repo, filename=cfg.checkpoint_filename, force_download=force)
        )
    except Exception as e:  # network errors, a missing repo: one actionable message
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise fail(f"{type(e).__name__}: {reason}") from None


def load_model(
    name_or_hf_id: str | ModelConfig,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    precision: str = "fp32",
    compile: bool = False,
    cuda_graphs: bool = True,
    apply_postprocessing: bool = True,
) -> SAM2Model:
    """Build a SAM 2 / 2.1 model and load its weights.

    Args:
        name_or_hf_id: ``sam2.1-hiera-tiny``, ``sam2.1_hiera_tiny``, ``facebook/sam2.1-hiera-tiny``
            (any of the eight official variants), or a :class:`ModelConfig`.
        checkpoint: an official ``.pt`` file. Without it the official file is downloaded from the
            Hugging Face hub into its standard cache once, then reused.
        device: ``"cpu"``, ``"cuda"``, ``"mps"``...; ``None`` picks CUDA when present, else the CPU.
        precision: ``"fp32"`` (exact: the reference's numbers) or ``"bf16"`` (the fast path: the image
            encoder runs in bfloat16; where bf16 matmuls are fast, clicks and automatic masks also
            decode with a mask decoder whose image side is bf16 and tracking runs its memory attention
            under bfloat16 autocast; the weights, prompt encoder and memory encoder stay float32).
        compile: use ``torch.compile`` where it pays: today the full-resolution upsampling of an image
            predictor's masks on the CPU (same masks). The first click in a process compiles it (a few
            seconds; needs a C++ compiler, else one warning and the eager path):
            :func:`samkit.transforms.warm_up_compiled` does it ahead of time.
        cuda_graphs: on a CUDA device, image predictors record a click's prompt encoder and mask
            decoder as a CUDA graph the second time a prompt shape comes and replay it after that (the
            same kernels, so the same masks). Costs a few MiB of GPU memory per shape. No effect
            elsewhere.
        apply_postprocessing: as the reference's ``build_sam2`` argument: ``True`` keeps the mask
            decoder's "dynamic multimask via stability" fallback (an unstable single-mask output is
            replaced by the best of the multimask outputs); ``False`` switches it off, as Meta's
            automatic-mask notebook builds its model (``use_m2m=True`` gives other masks otherwise).

    All device-dependent decisions are made once here and stored as ``model.policy``
    (:class:`samkit.policy.Policy`); the performance page of the docs explains them.

    Returns:
        The model in eval mode on ``device``.
    """
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    cfg = get_config(name_or_hf_id)
    if not apply_postprocessing:
        cfg = dataclasses.replace(cfg, dynamic_multimask_via_stability=False)
    dev = resolve_device(device)
    if checkpoint is None:
        if not cfg.hf_repo:
            raise CheckpointError(f"{cfg.name!r} has no official weights; pass checkpoint=...")
        checkpoint = download_checkpoint(cfg.name)
    sd = load_state_dict_file(checkpoint)
    # Build on the meta device and adopt the loaded tensors: no time spent on random init.
    model = _meta_model(cfg)
    _check_keys(cfg, sd, str(checkpoint), _shapes(model))
    model.load_state_dict(sd, strict=True, assign=True)
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point() and t.dtype != torch.float32:
            t.data = t.data.float()
    model = model.to(dev).eval()
    model._policy_settings = {"compile": bool(compile), "cuda_graphs": bool(cuda_graphs)}
    model = apply_precision(model, precision)
    # one execution policy, decided here from the device, the CPU and these settings
    model.policy = decide(dev, precision, compile=compile, cuda_graphs=cuda_graphs)
    model.checkpoint_path = os.path.abspath(
        os.fspath(checkpoint)
    )  # for weights_sha256: saved states name their weights
    return model


def weights_sha256(model: SAM2Model) -> str:
    """What identifies a model's weights: the SHA-256 of the checkpoint file it was loaded from
    (``load_model``), else of its float32 state dict. Computed once per model (a large checkpoint
    takes a few seconds)."""
    cached = getattr(model, "_weights_sha256", None)
    if cached is not None:
        return cached
    path = getattr(model, "checkpoint_path", None)
    if path and os.path.isfile(path):
        from ._files import file_sha256

        digest = file_sha256(path)
    else:
        import hashlib

        h = hashlib.sha256()
        for k, v in sorted(model.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().float().cpu().contiguous().numpy().tobytes())
        digest = "weights:" + h.hexdigest()
    model._weights_sha256 = digest
    return digest


def apply_precision(model: SAM2Model, precision: str) -> SAM2Model:
    """Put a float32 model on the exact (``"fp32"``: unchanged) or the fast path (``"bf16"``; see
    :func:`load_model`): its policy is decided again, and its image encoder is cast to bfloat16 in
    place where the policy says bf16 pays (``policy.encoder``: not on CPUs that emulate bf16, where
    the fast path's encoder stays float32). Returns the model. A bf16 model cannot go back to fp32
    (its encoder weights may have been rounded): load it again instead."""
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    if precision != model.precision:
        if precision == "fp32":
            raise ValueError("a bf16 model cannot be made fp32 again (its encoder was rounded); load it anew")
        model._precision = "bf16"
        if model.policy.encoder == "bf16":  # (the policy is decided anew for the new precision)
            model.image_encoder.to(torch.bfloat16)
    return model
