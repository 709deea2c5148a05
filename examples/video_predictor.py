"""Meta's video predictor notebook (``notebooks/video_predictor_example.ipynb``) on samkit.

The notebook's three examples on a folder of JPEG frames (the bedroom video), in its order:

1. one object from two clicks on frame 0, propagated; a negative click on a later frame to fix it,
   propagated again;
2. after ``reset_state``, an object from a box, then the box with a click, propagated;
3. after ``reset_state``, two objects (the first with a positive and a negative click), propagated;

plus the mask prompt the notebook points to (``add_new_mask``, as ``tools/vos_inference.py`` uses
it): after ``reset_state``, example 1's final mask on frame 0 given as a mask, with a second object
added by a click, propagated. :func:`notebook_steps` is written against the reference's API and runs
on either package; only the imports and the model-building line differ from the notebook::

    from samkit import build_sam2_video_predictor
    predictor = build_sam2_video_predictor(model_cfg, sam2_checkpoint, device=device)

Run it (official tiny SAM 2.1 weights downloaded once unless ``--checkpoint`` is given)::

    python3 examples/video_predictor.py --video ../shared/data/videos/bedroom --out /tmp/video-steps

The notebook's video has 200 frames and refines frame 150; ``--refine-frame`` picks the frame here
(default: three quarters of the way in).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np


def frame_names(video_dir: str) -> list[str]:
    """The JPEG frame names of a folder, sorted by frame number (as the notebook lists them)."""
    names = [
        p for p in os.listdir(video_dir) if os.path.splitext(p)[-1] in [".jpg", ".jpeg", ".JPG", ".JPEG"]
    ]
    names.sort(key=lambda p: int(os.path.splitext(p)[0]))
    return names


def _collect(predictor, inference_state) -> dict[int, dict]:
    """The notebook's propagation loop: per frame, per object id, the (1, H, W) boolean mask."""
    video_segments = {}
    for out_frame_idx, out_obj_ids, out_mask_logits in predictor.propagate_in_video(inference_state):
        video_segments[out_frame_idx] = {
            out_obj_id: (out_mask_logits[i] > 0.0).cpu().numpy() for i, out_obj_id in enumerate(out_obj_ids)
        }
    return video_segments


def notebook_steps(predictor, video_dir: str, refine_frame: int | None = None) -> list[tuple[str, object]]:
    """Run the notebook's steps with ``predictor`` (samkit's VideoPredictor or the reference's
    SAM2VideoPredictor). Returns ``[(step, output)]`` in order: a click's output is
    ``(obj_ids, logits as a float32 numpy array)``, a propagation's the notebook's
    ``video_segments`` dict (frame -> obj_id -> boolean mask)."""
    steps: list[tuple[str, object]] = []

    def interact(tag, result):
        _, out_obj_ids, out_mask_logits = result
        steps.append((tag, (list(out_obj_ids), out_mask_logits.float().cpu().numpy())))

    inference_state = predictor.init_state(video_path=video_dir)
    n = inference_state["num_frames"]
    refine_frame = (3 * n) // 4 if refine_frame is None else refine_frame

    # Example 1: one object, two clicks, propagate, a negative click on a later frame, propagate again
    predictor.reset_state(inference_state)
    points, labels = np.array([[210, 350]], dtype=np.float32), np.array([1], np.int32)
    interact(
        "ex1 click",
        predictor.add_new_points_or_box(
            inference_state=inference_state, frame_idx=0, obj_id=1, points=points, labels=labels
        ),
    )
    points, labels = np.array([[210, 350], [250, 220]], dtype=np.float32), np.array([1, 1], np.int32)
    interact(
        "ex1 second click",
        predictor.add_new_points_or_box(
            inference_state=inference_state, frame_idx=0, obj_id=1, points=points, labels=labels
        ),
    )
    steps.append(("ex1 propagate", _collect(predictor, inference_state)))
    points, labels = np.array([[82, 415]], dtype=np.float32), np.array([0], np.int32)
    interact(
        "ex1 refine",
        predictor.add_new_points_or_box(
            inference_state=inference_state, frame_idx=refine_frame, obj_id=1, points=points, labels=labels
        ),
    )
    segments = _collect(predictor, inference_state)
    steps.append(("ex1 propagate again", segments))
    first_object_mask = segments[0][1][0]

    # Example 2: a box, then the box with a click
    predictor.reset_state(inference_state)
    box = np.array([300, 0, 500, 400], dtype=np.float32)
    interact(
        "ex2 box",
        predictor.add_new_points_or_box(inference_state=inference_state, frame_idx=0, obj_id=4, box=box),
    )
    points, labels = np.array([[460, 60]], dtype=np.float32), np.array([1], np.int32)
    interact(
        "ex2 box and click",
        predictor.add_new_points_or_box(
            inference_state=inference_state, frame_idx=0, obj_id=4, points=points, labels=labels, box=box
        ),
    )
    steps.append(("ex2 propagate", _collect(predictor, inference_state)))

    # Example 3: two objects at once
    predictor.reset_state(inference_state)
    points, labels = np.array([[200, 300]], dtype=np.float32), np.array([1], np.int32)
    interact(
        "ex3 object 2",
        predictor.add_new_points_or_box(
            inference_state=inference_state, frame_idx=0, obj_id=2, points=points, labels=labels
        ),
    )
    points, labels = np.array([[200, 300], [275, 175]], dtype=np.float32), np.array([1, 0], np.int32)
    interact(
        "ex3 object 2 negative click",
        predictor.add_new_points_or_box(
            inference_state=inference_state, frame_idx=0, obj_id=2, points=points, labels=labels
        ),
    )
    points, labels = np.array([[400, 150]], dtype=np.float32), np.array([1], np.int32)
    interact(
        "ex3 object 3",
        predictor.add_new_points_or_box(
            inference_state=inference_state, frame_idx=0, obj_id=3, points=points, labels=labels
        ),
    )
    steps.append(("ex3 propagate", _collect(predictor, inference_state)))

    # A mask prompt: example 1's result on frame 0 as a mask, and a second object from a click
    predictor.reset_state(inference_state)
    interact(
        "mask prompt",
        predictor.add_new_mask(
            inference_state=inference_state, frame_idx=0, obj_id=1, mask=first_object_mask
        ),
    )
    points, labels = np.array([[400, 150]], dtype=np.float32), np.array([1], np.int32)
    interact(
        "mask prompt, second object",
        predictor.add_new_points_or_box(
            inference_state=inference_state, frame_idx=0, obj_id=5, points=points, labels=labels
        ),
    )
    steps.append(("mask prompt propagate", _collect(predictor, inference_state)))
    return steps


def main(argv: list[str] | None = None) -> list:
    import torch
    from PIL import Image

    import samkit
    from samkit import build_sam2_video_predictor
    from samkit.build_sam import config_from_name

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--config", default="configs/sam2.1/sam2.1_hiera_t.yaml", help="Meta config name or samkit model"
    )
    p.add_argument("--checkpoint", default=None, help="official .pt (default: download the config's weights)")
    p.add_argument(
        "--video", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "videos" / "bedroom")
    )
    p.add_argument("--refine-frame", type=int, default=None, help="frame of example 1's negative click")
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: CUDA when present)")
    p.add_argument(
        "--image-size", type=int, default=None, help="model resolution (default 1024; a multiple of 32)"
    )
    p.add_argument("--out", default=None, help="folder for pictures of the last frame of each propagation")
    args = p.parse_args(argv)

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    checkpoint = args.checkpoint or samkit.download_checkpoint(config_from_name(args.config).name)
    overrides = [f"++model.image_size={args.image_size}"] if args.image_size else []
    predictor = build_sam2_video_predictor(
        args.config, str(checkpoint), device=device, hydra_overrides_extra=overrides, progress=False
    )
    steps = notebook_steps(predictor, args.video, args.refine_frame)
    for name, out in steps:
        if isinstance(out, dict):
            areas = {obj: int(m.sum()) for obj, m in out[max(out)].items()}
            print(f"{name}: {len(out)} frames; mask pixels on the last frame {areas}")
        else:
            ids, logits = out
            print(f"{name}: objects {ids}, mask pixels {[int((m > 0).sum()) for m in logits]}")
    if args.out:
        from samkit.visualize import overlay_masks

        out_dir = Path(args.out)
        out_dir.mkdir(parents=True, exist_ok=True)
        names = frame_names(args.video)
        for name, out in steps:
            if isinstance(out, dict):
                f = max(out)
                frame = np.array(Image.open(os.path.join(args.video, names[f])).convert("RGB"))
                overlay_masks(frame, [m[0] for m in out[f].values()]).save(
                    out_dir / f"{name.replace(' ', '_')}.png"
                )
        print(f"pictures in {out_dir}")
    return steps


if __name__ == "__main__":
    main()
