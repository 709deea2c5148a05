"""samkit.tune_allocator: takes effect on glibc, is harmless to call again, and leaves results alone."""

from __future__ import annotations

import platform
import subprocess
import sys

import samkit


def test_tune_allocator_on_glibc_and_idempotent():
    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    first = samkit.tune_allocator()
    assert first is glibc
    assert samkit.tune_allocator() is first


def test_tuned_process_computes_the_same():
    # a fresh process, so that the setting is applied before any allocation of the computation
    code = (
        "import torch, samkit; torch.manual_seed(0); a = torch.randn(512, 4096);"
        "x = (a @ a.T).sum().item(); samkit.tune_allocator(); y = (a @ a.T).sum().item();"
        "print(x == y)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_has_fast_bf16_answers_per_device():
    import torch

    from samkit.runtime import has_fast_bf16

    assert has_fast_bf16("meta") is False
    cpu = has_fast_bf16("cpu")
    assert isinstance(cpu, bool)
    # agrees with what the CPU reports (/proc/cpuinfo flags on Linux)
    if sys.platform.startswith("linux"):
        flags = open("/proc/cpuinfo").read()
        assert cpu == ("avx512_bf16" in flags or "amx_tile" in flags)
    assert has_fast_bf16(torch.device("cpu")) == cpu


def test_bf16_pays_for_light_work_only_on_cpus_with_fast_bf16():
    """The fast path's bf16 mask decoder and tracking autocast: on CPUs with fast bf16 only (on a GPU
    they are launch-bound and bf16 adds cast kernels), whatever CUDA reports."""
    import torch

    from samkit.runtime import bf16_pays_for_light_work, has_fast_bf16

    assert bf16_pays_for_light_work("cpu") == has_fast_bf16("cpu")
    assert bf16_pays_for_light_work(torch.device("cuda")) is False
    assert bf16_pays_for_light_work("meta") is False


def test_bf16_attention_by_matmuls_on_cpus_with_avx512_bf16_but_no_amx():
    """The fast path's attention by matmuls (modeling.common.attention): exactly where the CPU has
    AVX512-BF16 and no AMX, as the CPU reports it (/proc/cpuinfo flags on Linux)."""
    from samkit.runtime import bf16_attention_by_matmuls, has_fast_bf16

    got = bf16_attention_by_matmuls()
    assert isinstance(got, bool)
    if sys.platform.startswith("linux"):
        flags = open("/proc/cpuinfo").read()
        assert got == ("avx512_bf16" in flags and "amx_tile" not in flags)
    assert not got or has_fast_bf16("cpu")
