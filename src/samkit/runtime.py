"""Process-wide settings that make samkit's CPU work faster.

:func:`tune_allocator` keeps freed memory in the process for reuse. glibc's malloc hands large
blocks back to the kernel on free and maps fresh pages on the next allocation, so every big
intermediate tensor pays a page fault per 4 KiB page on first touch: the mask decoder's
per-prompt tensors (4-16 MiB) spent ~30% of their time there. samkit's command line, server and
batch workers call it; library users may call it once at start-up. The cost: the process keeps
its peak heap instead of shrinking after a burst.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["bf16_attention_by_matmuls", "bf16_pays_for_light_work", "has_fast_bf16", "tune_allocator"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# below this size, allocations come from the reusable heap rather than fresh mappings
MMAP_THRESHOLD = 1 << 30
TRIM_THRESHOLD = 2 << 30

_tuned = False


def tune_allocator() -> bool:
    """Make glibc's malloc reuse freed memory instead of returning it to the kernel (Linux only;
    elsewhere, or on another C library, nothing happens). Returns whether it took effect; calling
    it again is harmless."""
    global _tuned
    if _tuned:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _tuned = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    return _tuned


def has_fast_bf16(device) -> bool:
    """Whether bfloat16 matmuls beat float32 on ``device``: CUDA GPUs that support bf16, and CPUs
    with AVX512-BF16 or AMX (elsewhere PyTorch emulates bf16 and it runs slower than float32)."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if dev.type != "cpu":
        return False
    return _cpu_has("avx512_bf16") or _cpu_has("amx_tile")


def _cpu_has(feature: str) -> bool:
    """Whether this CPU has ``feature`` ("avx512_bf16", "amx_tile"), as PyTorch's private
    ``torch.cpu._is_<feature>_supported`` reports it (present since PyTorch 2.3; False without it)."""
    import torch

    probe = getattr(torch.cpu, f"_is_{feature}_supported", None)
    return bool(probe()) if probe is not None else False


def bf16_pays_for_light_work(device) -> bool:
    """Whether the fast path should also run the light models in bfloat16 on ``device``: the mask
    decoder of a click and the memory attention of a tracked frame (the image encoder runs in bf16
    on every device, and so does the automatic mask generator's decoder where bf16 is fast). On CPUs
    with fast bf16, yes: their matmuls run 4-6x faster. On CUDA, no: at these sizes a GPU waits on
    kernel launches, and bf16 only adds cast kernels. Measured on an H100 (tiny, 1800x1200): a click
    5.8 ms with the bf16 decoder against 5.6 without; a tracked frame 0.0385 s under autocast against
    0.032 without (frames cached; 780 kernel launches against 640)."""
    import torch

    dev = torch.device(device)
    return dev.type == "cpu" and has_fast_bf16(dev)


def bf16_attention_by_matmuls() -> bool:
    """Whether the fast path computes bfloat16 attention on the CPU as plain matmuls and a softmax
    (:func:`samkit.modeling.common.attention`) rather than PyTorch's fused kernel: on CPUs with
    AVX512-BF16 but no AMX. Measured on a 2-core AMD EPYC (torch 2.13): the encoder's global attention
    (4 heads, 4096 x 4096, d = 96) 146 ms fused against ~100 by matmuls; its 8x8 windows 15.6 against
    7.3 ms. With AMX the fused kernel is what the AMX figures were measured with, so it stays there."""
    return has_fast_bf16("cpu") and not _cpu_has("amx_tile")
