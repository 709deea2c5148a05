"""Where a text prompt's time goes per image: the detector, SAM 2's encoder and its decoder.

No detector weights can be downloaded on the build machines, so a randomly initialised detector of the
real architecture stands in: Grounding DINO with ``GroundingDinoConfig()``'s defaults (the tiny
release's Swin-T backbone, BERT-base text encoder, 900 queries, images resized to 800 px on the short
side). Its boxes are meaningless but its cost is the real one's. SAM 2 runs with perturbed weights.

    python3 benchmarks/bench_text.py [--model sam2.1-hiera-tiny] [--images 4] [--runs 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def full_size_grounding_dino(path: Path) -> Path:
    """GroundingDinoConfig()'s defaults, random weights, with a small word-level BERT vocabulary."""
    from transformers import (
        BertTokenizerFast,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
    )

    if (path / "config.json").is_file():
        return path
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "truck", "person", "tree", "dog"]
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(words)})
    torch.manual_seed(0)
    model = GroundingDinoForObjectDetection(GroundingDinoConfig()).eval()
    model.save_pretrained(path)
    GroundingDinoProcessor(
        image_processor=GroundingDinoImageProcessor(), tokenizer=tokenizer
    ).save_pretrained(path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="sam2.1-hiera-tiny")
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--detector", default=None, help="a detector folder or id (default: the random full-size one)"
    )
    args = ap.parse_args()

    import oracle
    import samkit
    from samkit.text import Detector
    from samkit.text.predictor import masks_for_boxes

    samkit.tune_allocator()
    # the detector first: the oracle's torchvision stand-in, once on sys.path, would fool transformers
    folder = args.detector or full_size_grounding_dino(
        Path(tempfile.gettempdir()) / "samkit-bench-gdino-full"
    )
    detector = Detector.load(folder, device=args.device)
    model = samkit.load_model(args.model, checkpoint=oracle.checkpoint(args.model), device=args.device)
    params = sum(p.numel() for p in detector.model.parameters()) / 1e6
    from PIL import Image

    data = Path(__file__).resolve().parents[2] / "shared" / "data" / "images"
    photos = [np.array(Image.open(data / n).convert("RGB")) for n in ("truck.jpg", "groceries.jpg")]
    images = [photos[i % len(photos)] for i in range(args.images)]
    predictor = samkit.ImagePredictor(model)
    rows = {"detector": [], "encoder": [], "decoder": []}
    boxes_per_image = []
    for run in range(args.runs + 1):  # the first run warms up
        for im in images:
            t0 = time.perf_counter()
            d = detector.detect([im], ["truck", "person"], box_threshold=0.3)[0]
            t1 = time.perf_counter()
            predictor.set_image(im)
            t2 = time.perf_counter()
            masks_for_boxes(predictor, d.boxes[:20], im.shape[:2])
            t3 = time.perf_counter()
            if run:
                rows["detector"].append(t1 - t0)
                rows["encoder"].append(t2 - t1)
                rows["decoder"].append(t3 - t2)
                boxes_per_image.append(min(len(d), 20))
    med = {k: statistics.median(v) for k, v in rows.items()}
    total = sum(med.values())
    print(
        f"{args.model} + Grounding DINO ({params:.0f} M parameters, random), {args.images} photos x {args.runs} runs"
    )
    for k, v in med.items():
        print(f"  {k:9s} {v:7.3f} s/image  ({100 * v / total:4.1f}%)")
    print(f"  boxes per image: {statistics.median(boxes_per_image):.0f} (at most 20 decoded)")
    print("JSON " + json.dumps({"model": args.model, "detector_params_m": params, "seconds": med}))


if __name__ == "__main__":
    main()
