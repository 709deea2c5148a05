"""onnxruntime (CPU) against samkit for an encode and a click, side by side in one process (#32).

    python3 benchmarks/bench_onnx.py [--model sam2.1-hiera-tiny] [--runs 3] [--threads 2]

The model is exported with ``samkit export onnx`` (perturbed official-layout weights: no download);
both run the same image (truck.jpg from the test data, or a generated 1800x1200 picture) and the same
click, taking turns run by run, median of ``--runs`` after a warm-up. samkit's click is
``ImagePredictor.predict`` to a full-resolution mask; onnxruntime's is ``decoder.onnx`` with
``orig_im_size`` (also full-resolution logits), so both include the upsampling. samkit's fast path is
timed too: on CPUs without native bf16 it is the exact path (the policy keeps float32).
"""

from __future__ import annotations

import statistics
import time

import numpy as np
from _common import DATA, emit_json, exported, onnx_args


def main() -> None:
    args = onnx_args(__doc__, runs=3)

    import onnxruntime as ort
    import torch

    import oracle
    import samkit
    from samkit.transforms import load_image, preprocess_images

    exact, folder, export_s = exported(args.model, args.threads)
    fast = samkit.load_model(
        args.model, checkpoint=oracle.checkpoint(args.model), device="cpu", precision="bf16"
    )
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    enc = ort.InferenceSession(f"{folder}/encoder.onnx", opts, providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(f"{folder}/decoder.onnx", opts, providers=["CPUExecutionProvider"])
    path = DATA / "images" / "truck.jpg"
    image = (
        load_image(path)
        if path.exists()
        else np.random.default_rng(0).integers(0, 256, (1200, 1800, 3), np.uint8)
    )
    h, w = image.shape[:2]
    s = exact.image_size
    point = np.array([[w * 0.45, h * 0.5]])

    feeds = {}

    def ort_encode():
        x = preprocess_images([image], s, "cpu").numpy()  # the same resize and normalisation
        e, h0, h1 = enc.run(["image_embed", "high_res_feats_0", "high_res_feats_1"], {"image": x})
        feeds.update(image_embed=e, high_res_feats_0=h0, high_res_feats_1=h1)

    def ort_click():
        dec.run(
            None,
            {
                **feeds,
                "point_coords": (point * [s / w, s / h])[None].astype(np.float32),
                "point_labels": np.array([[1]], np.float32),
                "mask_input": np.zeros((1, 1, s // 4, s // 4), np.float32),
                "has_mask_input": np.zeros(1, np.float32),
                "orig_im_size": np.array([h, w], np.float32),
            },
        )

    preds = {"samkit": samkit.ImagePredictor(exact), "samkit-fast": samkit.ImagePredictor(fast)}
    calls = {
        "onnxruntime": {"encode": ort_encode, "click": ort_click},
        **{
            name: {
                "encode": (lambda p=p: p.set_image(image)),
                "click": (lambda p=p: p.predict(point_coords=point, point_labels=np.array([1]))),
            }
            for name, p in preds.items()
        },
    }
    rows: dict = {name: {} for name in calls}
    for fig in ("encode", "click"):
        times: dict = {name: [] for name in calls}
        for name in calls:
            calls[name][fig]()  # warm-up (and the embedding the click needs)
        for r in range(args.runs):
            for name in calls if r % 2 == 0 else list(calls)[::-1]:
                t = time.perf_counter()
                calls[name][fig]()
                times[name].append(time.perf_counter() - t)
        for name in calls:
            rows[name][f"{fig}_s"] = round(statistics.median(times[name]), 4)
    for name, r in rows.items():
        print(f"{name:<12} encode {r['encode_s']:.3f} s   click {1e3 * r['click_s']:.1f} ms")
    emit_json(
        {
            "model": args.model,
            "threads": args.threads,
            "image": [h, w],
            "export_s": round(export_s, 1),
            "onnxruntime": ort.__version__,
            "torch": torch.__version__,
            "rows": rows,
        }
    )


if __name__ == "__main__":
    main()
