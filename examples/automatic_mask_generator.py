"""Meta's automatic mask generator notebook (``notebooks/automatic_mask_generator_example.ipynb``) on samkit.

The notebook builds one model with ``apply_postprocessing=False``, generates masks with the default
settings, then again with its tuned settings: a denser grid, one layer of crops, lower thresholds,
small-region removal and ``use_m2m=True`` (each mask refined by a second decoder pass fed with its own
logits). :func:`notebook_steps` is written against the reference's API and runs on either package;
only the imports and the model-building line differ from the notebook::

    from samkit import SAM2AutomaticMaskGenerator, build_sam2
    sam2 = build_sam2(model_cfg, sam2_checkpoint, device=device, apply_postprocessing=False)

Run it (official tiny SAM 2.1 weights downloaded once unless ``--checkpoint`` is given)::

    python3 examples/automatic_mask_generator.py --image ../shared/data/images/groceries.jpg --out /tmp/amg

``--points-per-side`` scales both grids down (the notebook's are 32 and 64) for a quick run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

# the notebook's tuned generator; points_per_side (64) is an argument of notebook_steps
TUNED = dict(
    points_per_batch=128,
    pred_iou_thresh=0.7,
    stability_score_thresh=0.92,
    stability_score_offset=0.7,
    crop_n_layers=1,
    box_nms_thresh=0.7,
    crop_n_points_downscale_factor=2,
    min_mask_region_area=25.0,
    use_m2m=True,
)


def notebook_steps(
    sam2,
    generator_cls,
    image: np.ndarray,
    points_per_side: int = 32,
    tuned_points_per_side: int = 64,
    default_overrides: dict | None = None,
    tuned_overrides: dict | None = None,
) -> dict[str, list[dict]]:
    """The notebook's two generators on ``image``: ``generator_cls`` is samkit's or the reference's
    SAM2AutomaticMaskGenerator and ``sam2`` a model built for it. Returns ``{"default": masks,
    "tuned": masks}``, each the list of annotation dicts ``generate`` returns. The grids default to
    the notebook's; ``default_overrides`` / ``tuned_overrides`` change the two generators' other
    arguments (for quick tests on untrained weights, whose scores miss the notebook's thresholds)."""
    mask_generator = generator_cls(sam2, points_per_side=points_per_side, **(default_overrides or {}))
    masks = mask_generator.generate(image)

    mask_generator_2 = generator_cls(
        model=sam2, points_per_side=tuned_points_per_side, **{**TUNED, **(tuned_overrides or {})}
    )
    masks2 = mask_generator_2.generate(image)
    return {"default": masks, "tuned": masks2}


def main(argv: list[str] | None = None) -> dict:
    import torch

    import samkit
    from samkit import SAM2AutomaticMaskGenerator, build_sam2
    from samkit.build_sam import config_from_name

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--config", default="configs/sam2.1/sam2.1_hiera_t.yaml", help="Meta config name or samkit model"
    )
    p.add_argument("--checkpoint", default=None, help="official .pt (default: download the config's weights)")
    p.add_argument(
        "--image",
        default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "images" / "groceries.jpg"),
    )
    p.add_argument(
        "--points-per-side", type=int, default=None, help="the tuned grid (default 64; the first: half)"
    )
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: CUDA when present)")
    p.add_argument(
        "--image-size", type=int, default=None, help="model resolution (default 1024; a multiple of 32)"
    )
    p.add_argument("--out", default=None, help="folder for the pictures of both generators' masks")
    args = p.parse_args(argv)

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    checkpoint = args.checkpoint or samkit.download_checkpoint(config_from_name(args.config).name)
    overrides = [f"++model.image_size={args.image_size}"] if args.image_size else []
    sam2 = build_sam2(
        args.config,
        str(checkpoint),
        device=device,
        apply_postprocessing=False,
        hydra_overrides_extra=overrides,
    )

    image = np.array(Image.open(args.image).convert("RGB"))
    tuned = args.points_per_side or 64
    results = notebook_steps(sam2, SAM2AutomaticMaskGenerator, image, max(1, tuned // 2), tuned)
    for name, masks in results.items():
        print(f"{name}: {len(masks)} masks" + (f", keys {sorted(masks[0])}" if masks else ""))
    if args.out:
        from samkit.visualize import overlay_masks

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for name, masks in results.items():
            ordered = sorted(masks, key=lambda a: a["area"], reverse=True)
            overlay_masks(image, [a["segmentation"] for a in ordered]).save(out / f"{name}.png")
        print(f"pictures in {out}")
    return results


if __name__ == "__main__":
    main()
