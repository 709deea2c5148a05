"""The image encoder in float32 and in bfloat16 on this CPU, and what ``precision="bf16"`` picks here.

    python3 benchmarks/bench_encoder_dtype.py

sam2.1-hiera-tiny with perturbed weights, one 1024 px image, best of two after a warm-up, the three
contenders taking turns. On CPUs that emulate bfloat16 (no AVX512-BF16 or AMX) the bf16 encoder is
several times slower than the float32 one; the policy then keeps the fast path's encoder in float32
(``policy.encoder``), so ``--fast`` is never slower than the exact path there.
"""

from __future__ import annotations

import copy
import time

import torch
from _common import emit_json


def main() -> None:
    import oracle
    import samkit
    from samkit.policy import cpu_features

    torch.set_num_threads(2)
    ckpt = oracle.checkpoint("sam2.1-hiera-tiny")
    exact = samkit.load_model("sam2.1-hiera-tiny", checkpoint=ckpt, device="cpu")
    forced = copy.deepcopy(exact)
    forced.image_encoder.to(torch.bfloat16)
    fast = samkit.load_model("sam2.1-hiera-tiny", checkpoint=ckpt, device="cpu", precision="bf16")
    models = {"fp32": exact, "bf16 encoder (forced)": forced, "precision=bf16 (policy)": fast}
    x = torch.randn(1, 3, 1024, 1024)
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for model in models.values():
            model.forward_image(x)  # warm-up
        for _ in range(2):
            for name, model in models.items():
                t = time.perf_counter()
                model.forward_image(x)
                times[name].append(time.perf_counter() - t)
    print(f"cpu features: {cpu_features()}; precision=bf16 runs its encoder in {fast.policy.encoder}")
    for name, ts in times.items():
        print(f"{name:<26} {min(ts):.2f} s (runs {', '.join(f'{t:.2f}' for t in ts)})")
    emit_json({"cpu": str(cpu_features()), "encoder": fast.policy.encoder, "seconds": times})


if __name__ == "__main__":
    main()
