"""Where the time goes: a call's time split by kind of operation, and this machine's matmul rates.

``samkit bench --profile`` uses it to explain a speed ratio on the machine it runs on: a fast path
that gains little where matmuls are a small part of the time, or where bf16 matmuls are barely faster
than fp32 ones, shows it in these numbers.

Kinds (by PyTorch operator name, each operator's *self* time, so nested calls are not counted twice):

* ``matmul``: matrix products, attention and convolutions;
* ``norm/elementwise``: normalisation, activations, softmax, arithmetic, reductions;
* ``layout``: copies that move data without computing (``contiguous``, ``cat``, casts, padding,
  indexing, ``clone``);
* ``upsample``: interpolation;
* ``other``: everything else (allocation, views, Python-side glue inside operators).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

__all__ = ["KINDS", "matmul_gflops", "op_kind", "profile_split"]

KINDS = ("matmul", "norm/elementwise", "layout", "upsample", "other")

_MATMUL = (
    "mm",
    "addmm",
    "bmm",
    "baddbmm",
    "matmul",
    "linear",
    "einsum",
    "conv",
    "convolution",
    "scaled_dot_product",
    "flash_attention",
    "efficient_attention",
    "attention",
    "mkldnn_linear",
    "_linear_pointwise",
    "qlinear",
)
_UPSAMPLE = ("upsample", "interpolate", "grid_sampler", "_upsample")
_LAYOUT = (
    "copy_",
    "_to_copy",
    "to",
    "contiguous",
    "clone",
    "cat",
    "stack",
    "constant_pad_nd",
    "pad",
    "index",
    "index_select",
    "gather",
    "scatter",
    "repeat",
    "repeat_interleave",
    "flip",
    "roll",
    "fill_",
    "zero_",
    "masked_fill",
    "unfold",
    "im2col",
    "col2im",
)
_NORM = (
    "norm",
    "softmax",
    "gelu",
    "relu",
    "silu",
    "sigmoid",
    "tanh",
    "erf",
    "exp",
    "log",
    "add",
    "sub",
    "mul",
    "div",
    "neg",
    "sqrt",
    "rsqrt",
    "pow",
    "mean",
    "sum",
    "var",
    "std",
    "max",
    "min",
    "argmax",
    "where",
    "clamp",
    "abs",
    "sin",
    "cos",
    "gt",
    "lt",
    "ge",
    "le",
    "eq",
    "ne",
    "floor",
    "ceil",
    "round",
    "cumsum",
    "any",
    "all",
    "logical",
    "bitwise",
    "reciprocal",
    "lerp",
    "addcmul",
    "addcdiv",
)


def op_kind(name: str) -> str:
    """The kind of a profiler event name (``aten::addmm`` -> ``matmul``); see the module's doc."""
    base = name.split("::", 1)[-1].lower()
    if base.startswith("upsample") or any(base.startswith(p) for p in _UPSAMPLE):
        return "upsample"
    if any(base == p or base.startswith(p + "_") or base.startswith("_" + p) for p in _MATMUL) or (
        "conv" in base and "convert" not in base
    ):
        return "matmul"
    stem = base.strip("_").removesuffix("_")
    if any(stem == p.strip("_") or stem.startswith(p.strip("_") + "_") for p in _LAYOUT):
        return "layout"
    if any(
        stem == p or stem.startswith(p + "_") or stem.endswith("_" + p) or (len(p) > 3 and p in stem)
        for p in _NORM
    ):
        return "norm/elementwise"
    return "other"


def profile_split(fn: Callable[[], object], device: torch.device | str = "cpu") -> dict[str, float]:
    """Seconds of one call of ``fn`` per kind (plus ``"total"``, the call's wall time), measured with
    ``torch.profiler`` (operator self time; on CUDA, the kernels' device time)."""
    from torch.profiler import ProfilerActivity, profile

    device = torch.device(device)
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    split = dict.fromkeys(KINDS, 0.0)
    with profile(activities=activities) as prof:
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        wall = time.perf_counter() - t
    for e in prof.key_averages():
        if device.type == "cuda":
            # (named self_cuda_time_total before torch 2.4)
            us = getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0.0)
        else:
            us = e.self_cpu_time_total
        if us > 0 and "::" in e.key:
            split[op_kind(e.key)] += us / 1e6
    split["total"] = wall
    return split


def matmul_gflops(
    dtype: torch.dtype, n: int = 1024, device: torch.device | str = "cpu", budget_s: float = 2.0
) -> float:
    """This machine's rate for an n x n matmul in ``dtype`` (GFLOP/s): the best of up to three timed
    calls after a warm-up, fewer when one call takes longer than ``budget_s`` (emulated bf16)."""
    device = torch.device(device)
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)

    def timed() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        torch.mm(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t

    first = timed()
    best = first if first > budget_s else min(timed() for _ in range(3))
    return 2 * n**3 / best / 1e9
