"""Semi-supervised video object segmentation on a DAVIS-style dataset with samkit: the workflow of
Meta's ``tools/vos_inference.py``, with the same command line.

Input: ``--base_video_dir`` holds one folder of JPEG frames per video (``<video>/00000.jpg``...),
``--input_mask_dir`` the annotations: per video either palette PNGs with one colour index per object
(DAVIS, ``<video>/00000.png``) or, with ``--per_obj_png_file``, one folder per object
(``<video>/001/00000.png``, as SA-V stores them). Every object given on the first frame's annotation
(or on every annotated frame, ``--use_all_masks``) is added with ``add_new_mask`` and tracked through
the video; the masks are written to ``--output_mask_dir`` in the same layout (palette PNGs use the
input's palette, else the DAVIS one). For datasets whose objects appear after the first frame
(YouTube-VOS, LVOS), ``--track_object_appearing_later_in_video`` tracks each object on its own from
the frame it first appears on and merges the objects' scores per frame afterwards (at each pixel
the best-scoring object wins, except with per-object PNGs, which may overlap).

The model is built as Meta's tool builds it: ``build_sam2_video_predictor`` with
``++model.non_overlap_masks=true`` (``false`` with ``--per_obj_png_file``) and, unless
``--apply_postprocessing``, none of the builder's post-processing. samkit additions:
``--device``, ``--precision`` and ``--hydra_override`` (repeatable, e.g. ``++model.image_size=512``).

    python3 examples/vos_inference.py --sam2_cfg configs/sam2.1/sam2.1_hiera_t.yaml \\
        --sam2_checkpoint sam2.1_hiera_tiny.pt --base_video_dir DAVIS/JPEGImages/480p \\
        --input_mask_dir DAVIS/Annotations/480p --output_mask_dir outputs/davis
"""

from __future__ import annotations

import argparse
import os
from collections import defaultdict

import numpy as np
import torch
from PIL import Image

JPEG_EXTENSIONS = (".jpg", ".jpeg", ".JPG", ".JPEG")


def _voc_palette() -> bytes:
    """The DAVIS 2017 annotation palette (the PASCAL VOC colour map): colour index i spreads its
    bits over the high bits of red, green and blue, three at a time."""
    out = bytearray()
    for i in range(256):
        rgb = [0, 0, 0]
        for bit in range(8):
            for channel in range(3):
                rgb[channel] |= ((i >> (3 * bit + channel)) & 1) << (7 - bit)
        out += bytes(rgb)
    return bytes(out)


DAVIS_PALETTE = _voc_palette()


# --- annotation files -------------------------------------------------------------------------


def read_palette_png(path: str) -> tuple[np.ndarray, list[int] | None]:
    """An (H, W) uint8 index mask and its palette."""
    with Image.open(path) as im:
        return np.array(im).astype(np.uint8), im.getpalette()


def write_palette_png(path: str, mask: np.ndarray, palette) -> None:
    if mask.dtype != np.uint8 or mask.ndim != 2:
        raise ValueError(f"expected an (H, W) uint8 mask, got {mask.dtype} {mask.shape}")
    im = Image.fromarray(mask)
    im.putpalette(palette)
    im.save(path)


def split_objects(index_mask: np.ndarray) -> dict[int, np.ndarray]:
    """Index mask -> {object id: boolean mask} for every non-zero index present."""
    return {int(i): index_mask == i for i in np.unique(index_mask) if i > 0}


def merge_objects(per_obj: dict[int, np.ndarray], height: int, width: int) -> np.ndarray:
    """{object id: mask} -> one (H, W) uint8 index mask; where objects overlap the smaller id wins."""
    merged = np.zeros((height, width), dtype=np.uint8)
    for obj_id in sorted(per_obj, reverse=True):
        merged[per_obj[obj_id].reshape(height, width)] = obj_id
    return merged


def object_folders(mask_dir: str) -> list[str]:
    return sorted(os.listdir(mask_dir))


def read_annotation(
    input_mask_dir: str, video: str, frame: str, per_obj_png_file: bool, allow_missing: bool = False
) -> tuple[dict[int, np.ndarray], list[int] | None]:
    """The objects annotated on one frame ({id: boolean mask}) and the palette of the file(s)."""
    video_dir = os.path.join(input_mask_dir, video)
    if not per_obj_png_file:
        path = os.path.join(video_dir, f"{frame}.png")
        if allow_missing and not os.path.exists(path):
            return {}, None
        index_mask, palette = read_palette_png(path)
        return split_objects(index_mask), palette
    per_obj, palette = {}, None
    for name in object_folders(video_dir):
        path = os.path.join(video_dir, name, f"{frame}.png")
        if allow_missing and not os.path.exists(path):
            continue
        mask, palette = read_palette_png(path)
        per_obj[int(name)] = mask > 0
    return per_obj, palette


def write_annotation(
    output_mask_dir: str,
    video: str,
    frame: str,
    per_obj: dict[int, np.ndarray],
    height: int,
    width: int,
    per_obj_png_file: bool,
    palette,
) -> None:
    video_dir = os.path.join(output_mask_dir, video)
    os.makedirs(video_dir, exist_ok=True)
    if not per_obj_png_file:
        write_palette_png(
            os.path.join(video_dir, f"{frame}.png"), merge_objects(per_obj, height, width), palette
        )
        return
    for obj_id, mask in per_obj.items():
        obj_dir = os.path.join(video_dir, f"{obj_id:03d}")
        os.makedirs(obj_dir, exist_ok=True)
        write_palette_png(
            os.path.join(obj_dir, f"{frame}.png"), mask.reshape(height, width).astype(np.uint8), palette
        )


def write_segments(output_mask_dir, video_name, frames, segments, height, width, per_obj_png_file, palette):
    """:func:`write_annotation` for every tracked frame of one video."""
    os.makedirs(os.path.join(output_mask_dir, video_name), exist_ok=True)
    for frame_idx, per_obj in segments.items():
        write_annotation(
            output_mask_dir,
            video_name,
            frames[frame_idx],
            per_obj,
            height,
            width,
            per_obj_png_file,
            palette or DAVIS_PALETTE,
        )


def list_frames(base_video_dir: str, video: str) -> list[str]:
    """Frame names (without extension) of a video's JPEG folder, in frame-number order."""
    names = [
        os.path.splitext(p)[0]
        for p in os.listdir(os.path.join(base_video_dir, video))
        if os.path.splitext(p)[-1] in JPEG_EXTENSIONS
    ]
    return sorted(names, key=int)


def _later_objects_hint(video: str) -> str:
    return (
        f"In video {video!r}: add --track_object_appearing_later_in_video for datasets whose objects "
        "do not all appear on the first frame (LVOS, YouTube-VOS)"
    )


# --- inference --------------------------------------------------------------------------------


def annotated_frames(
    frames: list[str], input_mask_dir: str, video: str, use_all_masks: bool, per_obj_png_file: bool
) -> list[int]:
    """The frames whose annotations are used as prompts: the first, or every annotated one."""
    if not use_all_masks:
        return [0]
    video_dir = os.path.join(input_mask_dir, video)
    folders = object_folders(video_dir) if per_obj_png_file else [""]
    found = {
        i
        for folder in folders
        for i, name in enumerate(frames)
        if os.path.exists(os.path.join(video_dir, folder, f"{name}.png"))
    }
    if not found:
        raise RuntimeError(
            f"In video {video!r}: no input masks in {input_mask_dir!r}; check the annotation layout"
        )
    return sorted(found)


@torch.inference_mode()
def vos_inference(
    predictor,
    base_video_dir: str,
    input_mask_dir: str,
    output_mask_dir: str,
    video_name: str,
    score_thresh: float = 0.0,
    use_all_masks: bool = False,
    per_obj_png_file: bool = False,
) -> dict[int, dict[int, np.ndarray]]:
    """Track every object of the first (or every) annotated frame through one video and write the
    masks. Returns {frame index: {object id: (1, H, W) boolean mask}}."""
    frames = list_frames(base_video_dir, video_name)
    state = predictor.init_state(
        video_path=os.path.join(base_video_dir, video_name), async_loading_frames=False
    )
    height, width = state["video_height"], state["video_width"]

    palette, object_ids = None, None
    for frame_idx in annotated_frames(frames, input_mask_dir, video_name, use_all_masks, per_obj_png_file):
        try:
            per_obj, palette = read_annotation(
                input_mask_dir, video_name, frames[frame_idx], per_obj_png_file
            )
        except FileNotFoundError as e:
            raise RuntimeError(
                f"no input mask for frame {frame_idx}. {_later_objects_hint(video_name)}"
            ) from e
        if object_ids is None:
            object_ids = set(per_obj)
        new = set(per_obj) - object_ids
        if new:
            raise RuntimeError(
                f"object(s) {sorted(new)} first appear on frame {frame_idx}, not on the first "
                f"annotated frame. {_later_objects_hint(video_name)}"
            )
        for obj_id, mask in per_obj.items():
            predictor.add_new_mask(inference_state=state, frame_idx=frame_idx, obj_id=obj_id, mask=mask)
    if not object_ids:
        raise RuntimeError(f"no objects on the annotated frames. {_later_objects_hint(video_name)}")

    segments = {
        frame_idx: {obj_id: (logits[i] > score_thresh).cpu().numpy() for i, obj_id in enumerate(obj_ids)}
        for frame_idx, obj_ids, logits in predictor.propagate_in_video(state)
    }
    write_segments(output_mask_dir, video_name, frames, segments, height, width, per_obj_png_file, palette)
    return segments


@torch.inference_mode()
def vos_separate_inference_per_object(
    predictor,
    base_video_dir: str,
    input_mask_dir: str,
    output_mask_dir: str,
    video_name: str,
    score_thresh: float = 0.0,
    use_all_masks: bool = False,
    per_obj_png_file: bool = False,
) -> dict[int, dict[int, np.ndarray]]:
    """Track each object on its own, from the first frame it is annotated on (with every annotation
    of it with ``use_all_masks``), then merge the objects' scores per frame and write the masks."""
    frames = list_frames(base_video_dir, video_name)
    state = predictor.init_state(
        video_path=os.path.join(base_video_dir, video_name), async_loading_frames=False
    )
    height, width = state["video_height"], state["video_width"]

    # object id -> {frame index: mask}: its first non-empty annotation (or all of them)
    prompts: dict[int, dict[int, np.ndarray]] = defaultdict(dict)
    palette = None
    for frame_idx, name in enumerate(frames):
        if not per_obj_png_file and not os.path.exists(
            os.path.join(input_mask_dir, video_name, f"{name}.png")
        ):
            continue
        per_obj, found_palette = read_annotation(input_mask_dir, video_name, name, per_obj_png_file, True)
        palette = found_palette  # the last annotated frame's, as the reference's tool keeps it
        for obj_id, mask in per_obj.items():
            if mask.any() and (use_all_masks or not prompts[obj_id]):
                prompts[obj_id][frame_idx] = mask

    object_ids = sorted(obj for obj, p in prompts.items() if p)
    scores_per_object: dict[int, dict[int, np.ndarray]] = defaultdict(dict)
    for obj_id in object_ids:
        predictor.reset_state(state)
        for frame_idx, mask in sorted(prompts[obj_id].items()):
            predictor.add_new_mask(inference_state=state, frame_idx=frame_idx, obj_id=obj_id, mask=mask)
        start = min(prompts[obj_id])
        for frame_idx, _, logits in predictor.propagate_in_video(state, start_frame_idx=start, reverse=False):
            scores_per_object[obj_id][frame_idx] = logits.cpu().numpy()

    segments = {}
    for frame_idx in range(len(frames)):
        scores = torch.full((len(object_ids), 1, height, width), -1024.0, dtype=torch.float32)
        for i, obj_id in enumerate(object_ids):
            if frame_idx in scores_per_object[obj_id]:
                scores[i] = torch.from_numpy(scores_per_object[obj_id][frame_idx])
        if not per_obj_png_file:
            scores = predictor._apply_non_overlapping_constraints(scores)
        segments[frame_idx] = {
            obj_id: (scores[i] > score_thresh).cpu().numpy() for i, obj_id in enumerate(object_ids)
        }

    write_segments(output_mask_dir, video_name, frames, segments, height, width, per_obj_png_file, palette)
    return segments


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--sam2_cfg", default="configs/sam2.1/sam2.1_hiera_t.yaml", help="Meta config name or samkit model"
    )
    p.add_argument(
        "--sam2_checkpoint",
        default=None,
        help="official .pt (default: download the config's official weights)",
    )
    p.add_argument("--base_video_dir", required=True, help="one folder of JPEG frames per video")
    p.add_argument("--input_mask_dir", required=True, help="the annotations (palette PNGs) of each video")
    p.add_argument("--video_list_file", default=None, help="text file of video names (default: every folder)")
    p.add_argument("--output_mask_dir", required=True, help="where the predicted masks are written")
    p.add_argument("--score_thresh", type=float, default=0.0, help="logit threshold of the output masks")
    p.add_argument(
        "--use_all_masks", action="store_true", help="prompt with every annotated frame, not the first"
    )
    p.add_argument("--per_obj_png_file", action="store_true", help="one PNG folder per object (SA-V layout)")
    p.add_argument(
        "--apply_postprocessing",
        action="store_true",
        help="the builder's hole filling and stability fallback",
    )
    p.add_argument(
        "--track_object_appearing_later_in_video",
        action="store_true",
        help="track each object from the frame it first appears on (LVOS, YouTube-VOS)",
    )
    p.add_argument(
        "--use_vos_optimized_video_predictor",
        action="store_true",
        help="samkit's compiled path (compile=True)",
    )
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: CUDA when present)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument(
        "--hydra_override", action="append", default=[], help="an extra override, e.g. ++model.image_size=512"
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    import samkit
    from samkit import build_sam2_video_predictor
    from samkit.build_sam import config_from_name

    args = parse_args(argv)
    checkpoint = args.sam2_checkpoint or samkit.download_checkpoint(config_from_name(args.sam2_cfg).name)
    # per-object PNGs may overlap, so only the packed (DAVIS) output keeps objects apart
    overrides = ["++model.non_overlap_masks=" + ("false" if args.per_obj_png_file else "true")]
    predictor = build_sam2_video_predictor(
        config_file=args.sam2_cfg,
        ckpt_path=str(checkpoint),
        device=args.device or ("cuda" if torch.cuda.is_available() else "cpu"),
        apply_postprocessing=args.apply_postprocessing,
        hydra_overrides_extra=overrides + args.hydra_override,
        vos_optimized=args.use_vos_optimized_video_predictor,
        precision=args.precision,
        progress=False,
    )
    print(
        "prompting with "
        + ("every annotated frame" if args.use_all_masks else "the first frame's annotation")
    )
    if args.video_list_file is not None:
        with open(args.video_list_file) as f:
            videos = [line.strip() for line in f if line.strip()]
    else:
        videos = sorted(
            p for p in os.listdir(args.base_video_dir) if os.path.isdir(os.path.join(args.base_video_dir, p))
        )
    print(f"running VOS prediction on {len(videos)} videos: {videos}")
    run = vos_separate_inference_per_object if args.track_object_appearing_later_in_video else vos_inference
    for k, video in enumerate(videos):
        print(f"{k + 1}/{len(videos)} - {video}")
        run(
            predictor,
            args.base_video_dir,
            args.input_mask_dir,
            args.output_mask_dir,
            video,
            score_thresh=args.score_thresh,
            use_all_masks=args.use_all_masks,
            per_obj_png_file=args.per_obj_png_file,
        )
    print(f"done: {len(videos)} videos, masks in {args.output_mask_dir}")


if __name__ == "__main__":
    main()
