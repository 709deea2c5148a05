"""Can batching raise image-encoder throughput on this machine? Issue #6 asks for batched encode
throughput of at least 1.3x the batch-1 rate. This script measures, on the same weights, in rounds
that take turns (the VM's speed drifts within minutes):

- ``one``: ``set_image`` one image at a time with all threads (the batch-1 rate);
- ``batch``: ``set_image_batch`` of --batch images (samkit's batched encoder);
- ``streams``: --batch images encoded side by side, one Python thread each, every encoder on one
  intra-op thread (what a batch could at best win back if one image left cores idle);
- ``one thread``: one image at a time on a single thread, the scaling that bounds the two above.

    python benchmarks/bench_encode_batch.py [--variant sam2.1-hiera-tiny] [--fast] [--batch 2] [--rounds 4]

Images/s for each, and each against ``one``. Weights: a perturbed reference checkpoint (the oracle
makes it; timings do not depend on the values). Prints a table and a JSON line.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import torch
from _common import DATA, emit_json, same_allocator


def encode_streams(predictors, image) -> None:
    """Each predictor encodes ``image`` in its own thread; returns when all are done."""
    errors = []

    def work(p) -> None:
        try:
            torch.set_num_threads(1)  # (the intra-op thread count is per thread under OpenMP)
            p.set_image(image)
        except BaseException as e:  # re-raised below: a failed stream must not read as a fast one
            errors.append(e)

    threads = [threading.Thread(target=work, args=(p,)) for p in predictors]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def main() -> None:
    same_allocator()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="sam2.1-hiera-tiny")
    ap.add_argument("--fast", action="store_true", help='precision="bf16" (the fast encoder)')
    ap.add_argument("--batch", type=int, default=2, help="images per batch and parallel streams")
    ap.add_argument("--rounds", type=int, default=4, help="timed rounds after one warm-up round")
    ap.add_argument("--image", default=str(DATA / "images" / "truck.jpg"))
    args = ap.parse_args()
    if args.batch < 2:
        raise SystemExit("--batch must be at least 2")

    import oracle
    import samkit
    from samkit.transforms import load_image

    threads = torch.get_num_threads()
    model = samkit.load_model(
        args.variant, checkpoint=oracle.checkpoint(args.variant), precision="bf16" if args.fast else "fp32"
    )
    image = load_image(args.image)
    predictors = [samkit.ImagePredictor(model) for _ in range(args.batch)]
    n = args.batch

    def on_threads(k: int, fn) -> float:
        torch.set_num_threads(k)
        try:
            t = time.perf_counter()
            fn()
            return time.perf_counter() - t
        finally:
            torch.set_num_threads(threads)

    # seconds per image of each way
    ways = {
        "one": lambda: on_threads(threads, lambda: predictors[0].set_image(image)),
        "batch": lambda: on_threads(threads, lambda: predictors[0].set_image_batch([image] * n)) / n,
        "streams": lambda: on_threads(1, lambda: encode_streams(predictors, image)) / n,
        "one thread": lambda: on_threads(1, lambda: predictors[0].set_image(image)),
    }
    times = {k: [] for k in ways}
    with torch.inference_mode():
        for r in range(args.rounds + 1):
            for name, fn in ways.items() if r % 2 == 0 else reversed(ways.items()):
                s = fn()
                if r:  # the first round is the warm-up
                    times[name].append(s)
    rate = {k: 1.0 / statistics.median(v) for k, v in times.items()}
    print(
        f"{args.variant} {'fast (bf16)' if args.fast else 'exact (fp32)'}, {threads} threads, "
        f"batch {n}, median of {args.rounds} rounds, torch {torch.__version__}"
    )
    print(f"{'':<12}{'images/s':>10}{'vs one':>9}")
    for k, v in rate.items():
        print(f"{k:<12}{v:>10.3f}{v / rate['one']:>8.2f}x")
    print(f"thread scaling 1 -> {threads}: {rate['one'] / rate['one thread']:.2f}x")
    emit_json(
        {
            "variant": args.variant,
            "fast": args.fast,
            "threads": threads,
            "batch": n,
            "images_per_s": rate,
            "vs_one": {k: v / rate["one"] for k, v in rate.items()},
        }
    )


if __name__ == "__main__":
    main()
