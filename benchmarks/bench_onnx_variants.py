"""The exported graphs' variants (fp16, int8, int8-dynamic) against float32: file sizes, onnxruntime (CPU) encode and
click times, and how far their masks move (#32).

    python3 benchmarks/bench_onnx_variants.py [--model sam2.1-hiera-tiny] [--runs 3] [--threads 2]

Perturbed official-layout weights (no download). Masks: 8 clicks on a grid over each test photo
(truck.jpg, groceries.jpg; generated pictures where the data is absent), the three candidates of
each, thresholded at 0 at full resolution; IoU of each variant's mask with the float32 graphs' mask.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
from _common import DATA, emit_json, exported, onnx_args


def main() -> None:
    args = onnx_args(__doc__, runs=3)

    import onnxruntime as ort

    from samkit.export.onnx import GRAPH_FILES, VARIANTS, export_variant
    from samkit.transforms import load_image, preprocess_images

    model, folder, _ = exported(args.model, args.threads)
    dirs = {"fp32": folder, **{v: export_variant(folder, v) for v in VARIANTS}}
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.log_severity_level = 3
    sess = {
        v: {
            g: ort.InferenceSession(str(d / f"{g}.onnx"), opts, providers=["CPUExecutionProvider"])
            for g in ("encoder", "decoder")
        }
        for v, d in dirs.items()
    }
    s = model.image_size
    photos = []
    for name in ("truck.jpg", "groceries.jpg"):
        p = DATA / "images" / name
        photos.append(
            load_image(p)
            if p.exists()
            else np.random.default_rng(len(photos)).integers(0, 256, (900, 1200, 3), np.uint8)
        )

    def encode(v, image):
        x = preprocess_images([image], s, "cpu").numpy()
        e, h0, h1, _ = sess[v]["encoder"].run(None, {"image": x})
        return {"image_embed": e, "high_res_feats_0": h0, "high_res_feats_1": h1}

    def click(v, feats, image, xy):
        h, w = image.shape[:2]
        return (
            sess[v]["decoder"].run(
                ["masks"],
                {
                    **feats,
                    "point_coords": (np.array([[xy]]) * [s / w, s / h]).astype(np.float32),
                    "point_labels": np.array([[1]], np.float32),
                    "mask_input": np.zeros((1, 1, s // 4, s // 4), np.float32),
                    "has_mask_input": np.zeros(1, np.float32),
                    "orig_im_size": np.array([h, w], np.float32),
                },
            )[0][0]
            > 0
        )

    rows: dict = {}
    masks: dict = {v: [] for v in dirs}
    for v in dirs:
        size = sum((dirs[v] / f).stat().st_size for f in GRAPH_FILES)
        enc_t, click_t = [], []
        for image in photos:
            feats = encode(v, image)  # warm-up
            for _ in range(args.runs):
                t = time.perf_counter()
                feats = encode(v, image)
                enc_t.append(time.perf_counter() - t)
            h, w = image.shape[:2]
            for i in range(8):
                xy = [w * (0.2 + 0.2 * (i % 4)), h * (0.35 + 0.3 * (i // 4))]
                t = time.perf_counter()
                masks[v].append(click(v, feats, image, xy))
                click_t.append(time.perf_counter() - t)
        rows[v] = {
            "mib": round(size / 2**20, 1),
            "encode_s": round(statistics.median(enc_t), 3),
            "click_ms": round(1e3 * statistics.median(click_t), 1),
        }
    for v in VARIANTS:
        ious = []
        for a, b in zip(masks["fp32"], masks[v]):
            for m, n in zip(a, b):
                union = np.logical_or(m, n).sum()
                ious.append(1.0 if union == 0 else np.logical_and(m, n).sum() / union)
        rows[v]["iou_min"] = round(float(min(ious)), 4)
        rows[v]["iou_mean"] = round(float(np.mean(ious)), 4)
    for v, r in rows.items():
        extra = f"   mask IoU min {r['iou_min']:.4f} mean {r['iou_mean']:.4f}" if "iou_min" in r else ""
        print(
            f"{v:<5} {r['mib']:7.1f} MiB   encode {r['encode_s']:.3f} s   click {r['click_ms']:.1f} ms{extra}"
        )
    emit_json({"model": args.model, "threads": args.threads, "onnxruntime": ort.__version__, "rows": rows})


if __name__ == "__main__":
    main()
