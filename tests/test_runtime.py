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
