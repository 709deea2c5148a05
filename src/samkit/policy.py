"""The execution policy: how samkit runs on a device, decided in one place.

Everything that depends on the device or the CPU's features -- which parts run in bfloat16, whether
clicks replay CUDA graphs, how the mask decoder groups prompts, which attention and upsampling
kernels run -- is a field of one frozen :class:`Policy`. :func:`samkit.load_model` computes it once
from the device and the user's settings (``precision``, ``compile``, ``cuda_graphs``) and stores it
on the model (``model.policy``); the predictors, the tracker and the kernels read it and make no
decision of their own. ``samkit models --policy``, ``GET /healthz`` and ``samkit bench`` print it.

The CPU's features are probed on first use, not at import (:func:`cpu_features`). Tests force any
decision on any machine with :func:`override` or by building a policy from a mocked
:class:`CPUFeatures`, so every branch runs on every CI machine.

See the performance page of the documentation for why each decision is what it is.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["CPUFeatures", "Policy", "cpu_features", "current", "decide", "override"]

PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class CPUFeatures:
    """The CPU features the policy looks at."""

    avx512_bf16: bool = False  # native bfloat16 dot products (AVX512-BF16)
    amx: bool = False  # Intel AMX tiles (bfloat16 matmuls several times faster again)
    onednn: bool = True  # PyTorch built with oneDNN (mkldnn): its fused linear op is there

    @property
    def fast_bf16(self) -> bool:
        """Whether bfloat16 matmuls beat float32 here (elsewhere PyTorch emulates bf16, slower)."""
        return self.avx512_bf16 or self.amx


@functools.lru_cache(maxsize=1)
def cpu_features() -> CPUFeatures:
    """This machine's :class:`CPUFeatures`, probed once (on first use) through PyTorch's
    ``torch.cpu._is_<feature>_supported`` (present since PyTorch 2.3; False without it)."""
    import torch

    def has(feature: str) -> bool:
        probe = getattr(torch.cpu, f"_is_{feature}_supported", None)
        return bool(probe()) if probe is not None else False

    try:
        onednn = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._linear_pointwise is not None
    except (AttributeError, RuntimeError):
        onednn = False
    return CPUFeatures(avx512_bf16=has("avx512_bf16"), amx=has("amx_tile"), onednn=onednn)


@dataclass(frozen=True)
class Policy:
    """How a model runs. Build one with :func:`decide` (``load_model`` does); change a field with
    :meth:`replace`. Field by field:

    - ``device``: the device type (``cpu``, ``cuda``, ``mps``) the decisions are for.
    - ``precision``: ``fp32`` (exact: the reference's numbers) or ``bf16`` (the fast path: bfloat16
      wherever it pays on this device).
    - ``encoder``: the image encoder's dtype: ``bf16`` on the fast path where bfloat16 matmuls are
      fast (CPUs with AVX512-BF16 or AMX, GPUs), ``fp32`` elsewhere -- other CPUs emulate bf16, and
      there the bf16 encoder measured 5x slower than the float32 one (the fast path is then the exact
      path, never slower than it).
    - ``compile``: the full-resolution upsampling of a click's masks runs as a ``torch.compile``'d
      loop (CPU).
    - ``cuda_graphs``: on CUDA, clicks replay recorded CUDA graphs.
    - ``click_decoder`` / ``amg_decoder``: dtype of the mask decoder's image side for a click and for
      the automatic mask generator's fast mode (``fp32`` or ``bf16``).
    - ``tracking_autocast``: video tracking runs its memory attention under bfloat16 autocast.
    - ``attention``: bfloat16 CPU attention as PyTorch's ``fused`` kernel or as ``matmuls`` and a
      softmax in query chunks (:mod:`samkit.kernels.attention`).
    - ``rope``: the memory attention's rotary encoding as ``complex`` products (one per channel pair,
      the fast eager form) or as ``real`` cosine/sine arithmetic (the same numbers; what ONNX export
      traces, ONNX having no complex numbers) (:func:`samkit.modeling.position_encoding.apply_rope`).
    - ``fused_linear``: bfloat16 CPU linear layers as one oneDNN op with bias and activation
      (:mod:`samkit.kernels.linear`).
    - ``prompt_group`` / ``prompt_group_bf16``: prompts the mask decoder runs together (float32 /
      bfloat16 image side).
    - ``upscale``: the decoder's token-order upscaling ``tiled`` by grid rows (cache-sized, CPU) or
      ``untiled`` (one batch of kernels, GPU) (:mod:`samkit.kernels.upscale`).
    - ``upsample``: a click's masks to full resolution: ``tiles`` (flat tiles skipped, CPU) or
      ``interpolate`` (``F.interpolate`` then threshold) (:mod:`samkit.kernels.upsample`).
    - ``amg_cells``: the automatic generator scores full-resolution stability and boxes by cells of
      the low-res grid (:mod:`samkit.kernels.cells`) rather than upsampling every mask.
    - ``encoder_batch``: images the encoder runs at once.
    - ``batch_objects``: video objects run through the tracking step together.
    - ``prefetch_frames``: the next video frame is read and resized in a background thread.
    """

    device: str = "cpu"
    precision: str = "fp32"
    encoder: str = "fp32"
    compile: bool = False
    cuda_graphs: bool = False
    click_decoder: str = "fp32"
    amg_decoder: str = "fp32"
    tracking_autocast: bool = False
    attention: str = "fused"
    fused_linear: bool = False
    rope: str = "complex"
    prompt_group: int = 4
    prompt_group_bf16: int = 16
    upscale: str = "tiled"
    upsample: str = "tiles"
    amg_cells: bool = True
    encoder_batch: int = 1
    batch_objects: bool = False
    prefetch_frames: bool = False

    def __post_init__(self) -> None:
        choices = {
            "precision": PRECISIONS,
            "encoder": PRECISIONS,
            "click_decoder": PRECISIONS,
            "amg_decoder": PRECISIONS,
            "attention": ("fused", "matmuls"),
            "upscale": ("tiled", "untiled"),
            "upsample": ("tiles", "interpolate"),
            "rope": ("complex", "real"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"Policy.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in ("prompt_group", "prompt_group_bf16", "encoder_batch"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"Policy.{name} must be >= 1, got {getattr(self, name)!r}")

    def replace(self, **changes) -> Policy:
        """A copy with some fields changed (unknown names raise TypeError)."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        """One ``name: value`` per line, for ``samkit models --policy`` and ``samkit bench``."""
        return "\n".join(f"{k}: {v}" for k, v in self.as_dict().items())


def decide(
    device="cpu",
    precision: str = "fp32",
    compile: bool = False,
    cuda_graphs: bool = True,
    features: CPUFeatures | None = None,
    cuda_bf16: bool | None = None,
) -> Policy:
    """The policy for ``device`` (a ``torch.device``, or a string such as ``"cuda:0"``) with the
    user's settings. ``features`` (the CPU's; default: :func:`cpu_features`) and ``cuda_bf16``
    (whether the GPU supports bfloat16; default: asked of CUDA) are for tests and tools that want
    the decisions of another machine."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    kind = device.type if hasattr(device, "type") else str(device).split(":")[0]
    if kind == "cpu":
        feats = features if features is not None else cpu_features()
        fast = feats.fast_bf16
        light_bf16 = fast  # a click's decoder and a tracked frame's attention gain 4-6x from bf16 matmuls
        attention = "matmuls" if feats.avx512_bf16 and not feats.amx else "fused"
        fused_linear = feats.onednn and fast
    else:
        if kind == "cuda":
            if cuda_bf16 is None:
                import torch

                cuda_bf16 = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
            fast = cuda_bf16
        else:
            fast = False
        # a GPU waits on kernel launches at these sizes: bf16 would only add cast kernels
        light_bf16 = False
        attention, fused_linear = "fused", False
    bf16 = precision == "bf16"
    on_cpu = kind == "cpu"
    return Policy(
        device=kind,
        precision=precision,
        # emulated bf16 (CPUs without AVX512-BF16/AMX) makes the encoder slower than float32
        encoder="bf16" if bf16 and (fast or kind != "cpu") else "fp32",
        compile=bool(compile),
        cuda_graphs=bool(cuda_graphs) and kind == "cuda",
        click_decoder="bf16" if bf16 and light_bf16 else "fp32",
        amg_decoder="bf16" if fast else "fp32",
        tracking_autocast=bf16 and light_bf16,
        attention=attention,
        fused_linear=fused_linear,
        prompt_group=4 if on_cpu else 64,
        prompt_group_bf16=16 if on_cpu else 64,
        upscale="tiled" if on_cpu else "untiled",
        upsample="tiles" if on_cpu else "interpolate",
        amg_cells=on_cpu,
        encoder_batch=1 if on_cpu else 64,
        batch_objects=kind == "cuda",
        prefetch_frames=not on_cpu,
    )


# --- the policy the kernels read ----------------------------------------------------------------
#
# Kernels deep inside the modules (attention, linear layers, the decoder's upscaling) see tensors, not
# the model. Their fields depend only on the device and the CPU, so they read the policy of the
# tensor's device; :func:`override` replaces fields for the code inside a ``with`` block (tests).

_OVERRIDES: contextvars.ContextVar[dict | None] = contextvars.ContextVar("samkit_policy", default=None)


@functools.lru_cache(maxsize=8)
def _default(kind: str) -> Policy:
    return decide(kind)


def current(device="cpu") -> Policy:
    """The policy the kernels follow for tensors on ``device``: the device's own decisions, with the
    fields of any active :func:`override`."""
    kind = device.type if hasattr(device, "type") else str(device).split(":")[0]
    base = _default(kind)
    changes = _OVERRIDES.get()
    return base.replace(**changes) if changes else base


@contextlib.contextmanager
def override(**fields) -> Iterator[None]:
    """Force kernel decisions inside a ``with`` block, whatever this machine's CPU:
    ``with samkit.policy.override(attention="matmuls"): ...``. Fields as :class:`Policy` has them;
    nesting merges. Model-level fields (precision, decoders, autocast, batching) live on
    ``model.policy`` instead."""
    Policy().replace(**fields)  # validates names and values
    merged = {**(_OVERRIDES.get() or {}), **fields}
    token = _OVERRIDES.set(merged)
    try:
        yield
    finally:
        _OVERRIDES.reset(token)
