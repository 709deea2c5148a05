"""AutomaticMaskGenerator: masks for everything in an image, from a grid of point prompts.

Same constructor arguments and output as the reference ``SAM2AutomaticMaskGenerator``. The output is
the same; the work is not: the reference upsamples every candidate mask to full resolution before
its cheapest filter, and encodes every survivor as RLE before NMS. Here

1. the decoder runs on the grid in batches and returns only low-res (256 x 256) logits, and does not
   even upscale those of prompts whose every mask fails the predicted-IoU filter;
2. the predicted-IoU filter drops candidates before anything is upsampled;
3. survivors' stability scores and boxes are computed at full resolution without upsampling them
   (kernels.cells: only the low-res cells the thresholds cross, the masks'
   outlines, are upsampled), or, for small crops and noise-like masks, by upsampling one mask (a few
   for small images) at a time; the low-res logits are kept;
4. box NMS runs on those boxes, and only its survivors are upsampled once more and encoded.

``fast=True`` (not in the reference) decodes the grid with the model's fast mask decoder, whose image
side runs in bfloat16 (on CUDA and on CPUs with AVX512-BF16 or AMX) and computes the stability scores and boxes for the filters
at the low-res logits' own size (longer side 256) instead of full resolution; the masks it returns
are still full resolution, but they and the set that survives the filters can differ slightly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .. import amg, rle
from .. import transforms as T
from ..modeling import SAM2Model
from ..policy import current
from ._base import ModelBacked, unexpected_keyword
from .image import ImagePredictor

__all__ = ["AutomaticMaskGenerator"]

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")
# bytes of full-resolution logits per chunk while scoring candidates: about one mask of a photo at
# a time, so that the upsampled logits are still in cache when they are thresholded and counted
# (larger chunks measured slower per mask: see the performance page), and memory stays bounded on
# huge images
CHUNK_BYTES = 4 * 2**20
# scoring by cells of the low-res grid (kernels.cells): masks scored together
# (a few MiB per (N, 256, 256) temporary), used for crops with at least CELL_MIN_SCALE times as many
# pixels as the logits, falling back to upsampling when over CELL_MAX_BOUNDARY of the cells are crossed
CELL_CHUNK = 16
CELL_MIN_SCALE = 4
CELL_MAX_BOUNDARY = 0.3


@dataclass
class _Candidates:
    """Masks of one crop still in the running (N of them)."""

    low_res: list[torch.Tensor] = field(default_factory=list)  # (n, h, w) logits after hole filling
    ious: list[torch.Tensor] = field(default_factory=list)  # (n,)
    points: list[torch.Tensor] = field(default_factory=list)  # (n, 2) float32, crop pixels
    stability: list[torch.Tensor] = field(default_factory=list)  # (n,)
    boxes: list[torch.Tensor] = field(default_factory=list)  # (n, 4) int64, crop pixels

    def add(self, low, ious, points, stability, boxes) -> None:
        for store, value in zip(
            (self.low_res, self.ious, self.points, self.stability, self.boxes),
            (low, ious, points, stability, boxes),
        ):
            store.append(value)

    def cat(self):
        if not self.ious:
            return None
        return tuple(torch.cat(x) for x in (self.low_res, self.ious, self.points, self.stability, self.boxes))


class AutomaticMaskGenerator(ModelBacked):
    """Generate masks for a whole image. Arguments as in the reference (see its documentation):

    points_per_side / point_grids (exactly one), points_per_batch, pred_iou_thresh,
    stability_score_thresh, stability_score_offset, mask_threshold, box_nms_thresh, crop_n_layers,
    crop_nms_thresh, crop_overlap_ratio, crop_n_points_downscale_factor, min_mask_region_area,
    output_mode ('binary_mask', 'uncompressed_rle', 'coco_rle'), use_m2m, multimask_output;
    plus ``fast`` (bf16 decoder and approximate filters, see the module docstring) and ``progress`` (a
    progress bar per crop encoding and batch of points).
    """

    def __init__(
        self,
        model: SAM2Model,
        points_per_side: int | None = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.8,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        mask_threshold: float = 0.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        point_grids: list[np.ndarray] | None = None,
        min_mask_region_area: int = 0,
        output_mode: str = "binary_mask",
        use_m2m: bool = False,
        multimask_output: bool = True,
        fast: bool = False,
        progress: bool = False,
        **kwargs,
    ) -> None:
        if kwargs:  # a misspelt argument (pred_iou_tresh=...) must not be dropped silently
            raise unexpected_keyword(type(self).__name__, kwargs, AutomaticMaskGenerator.__init__)
        if (points_per_side is None) == (point_grids is None):
            raise ValueError("Exactly one of points_per_side or point_grids must be provided.")
        if not isinstance(crop_n_layers, int) or crop_n_layers < 0:
            raise ValueError(f"crop_n_layers must be an int >= 0, got {crop_n_layers!r}")
        if not isinstance(crop_n_points_downscale_factor, int) or crop_n_points_downscale_factor < 1:
            raise ValueError(
                f"crop_n_points_downscale_factor must be an int >= 1, got {crop_n_points_downscale_factor!r}"
            )
        if points_per_side is not None:
            if not isinstance(points_per_side, (int, np.integer)) or points_per_side < 1:
                raise ValueError(f"points_per_side must be a positive int, got {points_per_side!r}")
            if int(points_per_side / crop_n_points_downscale_factor**crop_n_layers) < 1:
                raise ValueError(
                    f"points_per_side={points_per_side} leaves no points in the deepest crop layer "
                    f"(crop_n_layers={crop_n_layers}, downscale factor {crop_n_points_downscale_factor})"
                )
            grids = amg.build_all_layer_point_grids(
                int(points_per_side), crop_n_layers, crop_n_points_downscale_factor
            )
        else:
            grids = self._check_grids(point_grids, crop_n_layers)
        for name, v in (
            ("pred_iou_thresh", pred_iou_thresh),
            ("stability_score_thresh", stability_score_thresh),
            ("box_nms_thresh", box_nms_thresh),
            ("crop_nms_thresh", crop_nms_thresh),
        ):
            if not (isinstance(v, (int, float)) and 0.0 <= v <= 1.0):
                raise ValueError(f"{name} must be in [0, 1], got {v!r}")
        if not (0.0 <= crop_overlap_ratio < 1.0):
            raise ValueError(f"crop_overlap_ratio must be in [0, 1), got {crop_overlap_ratio!r}")
        if not (np.isfinite(stability_score_offset) and stability_score_offset >= 0):
            raise ValueError(f"stability_score_offset must be >= 0, got {stability_score_offset!r}")
        if not np.isfinite(mask_threshold):
            raise ValueError(f"mask_threshold must be finite, got {mask_threshold!r}")
        if not isinstance(points_per_batch, (int, np.integer)) or points_per_batch < 1:
            raise ValueError(f"points_per_batch must be a positive int, got {points_per_batch!r}")
        if min_mask_region_area < 0:
            raise ValueError(f"min_mask_region_area must be >= 0, got {min_mask_region_area!r}")
        if output_mode not in OUTPUT_MODES:
            raise ValueError(f"Unknown output_mode {output_mode!r}; use one of {', '.join(OUTPUT_MODES)}")

        self.model = model
        self.predictor = ImagePredictor(
            model, max_hole_area=min_mask_region_area, max_sprinkle_area=min_mask_region_area
        )
        self.point_grids = grids
        self.points_per_batch = int(points_per_batch)
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.stability_score_offset = stability_score_offset
        self.mask_threshold = mask_threshold
        self.box_nms_thresh = box_nms_thresh
        self.crop_n_layers = crop_n_layers
        self.crop_nms_thresh = crop_nms_thresh
        self.crop_overlap_ratio = crop_overlap_ratio
        self.crop_n_points_downscale_factor = crop_n_points_downscale_factor
        self.min_mask_region_area = min_mask_region_area
        self.output_mode = output_mode
        self.use_m2m = use_m2m
        self.multimask_output = multimask_output
        self.fast = fast
        self.progress = bool(progress)
        self._bar = None
        # the fast mode decodes the grid with the bf16-image-side decoder copy where bf16 is fast
        self._decoder = model.fast_mask_decoder(many_prompts=True) if fast else None
        self.timings: dict[str, float] = {}

    @staticmethod
    def _check_grids(point_grids, crop_n_layers: int) -> list[np.ndarray]:
        if not isinstance(point_grids, (list, tuple)) or len(point_grids) != crop_n_layers + 1:
            n = len(point_grids) if isinstance(point_grids, (list, tuple)) else "not a list"
            raise ValueError(
                f"point_grids must be a list of {crop_n_layers + 1} arrays (one per crop layer), got {n}"
            )
        out = []
        for i, g in enumerate(point_grids):
            a = np.asarray(g, dtype=np.float64)
            if a.ndim != 2 or a.shape[1] != 2 or len(a) == 0:
                raise ValueError(f"point_grids[{i}] must have shape (N, 2) with N >= 1, got {a.shape}")
            if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
                raise ValueError(f"point_grids[{i}] must hold (x, y) points normalized to [0, 1]")
            out.append(a)
        return out

    # --- generation -----------------------------------------------------------------------------

    @torch.inference_mode()
    def generate(self, image) -> list[dict]:
        """Masks for an HxWx3 uint8 image (or PIL image): a list of dicts with ``segmentation``,
        ``area``, ``bbox`` (XYWH), ``predicted_iou``, ``point_coords``, ``stability_score`` and
        ``crop_box`` (XYWH), ordered as the reference orders them."""
        import time

        image = T.to_rgb_array(image)
        h, w = image.shape[:2]
        if min(h, w) < 2:
            raise ValueError(f"image is too small for automatic mask generation ({w}x{h}); need at least 2x2")
        crop_boxes, layers = amg.generate_crop_boxes((h, w), self.crop_n_layers, self.crop_overlap_ratio)
        for box in crop_boxes:
            if box[2] <= box[0] or box[3] <= box[1]:
                raise ValueError(f"image ({w}x{h}) is too small for crop_n_layers={self.crop_n_layers}")
        self.timings = {"encode": 0.0, "decode": 0.0, "filter": 0.0, "nms": 0.0, "encode_masks": 0.0}
        results = []  # per crop: list of records
        if self.progress:  # one step per crop encoding and per batch of points
            from tqdm.auto import tqdm

            ppb = self.points_per_batch
            steps = sum(1 + -(-len(self.point_grids[layer]) // ppb) for layer in layers)
            self._bar = tqdm(total=steps, desc="automatic masks", unit="step", dynamic_ncols=True)
        try:
            for box, layer in zip(crop_boxes, layers):
                results.append(self._process_crop(image, box, layer, (h, w)))
        finally:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
        records = [r for crop in results for r in crop]
        if len(crop_boxes) > 1 and records:
            t = time.perf_counter()
            boxes = torch.stack([r["_box"] for r in records]).float()
            crop_t = torch.tensor([r["_crop"] for r in records])
            keep = amg.nms(boxes, 1 / amg.box_area(crop_t), self.crop_nms_thresh)
            records = [records[i] for i in keep.tolist()]
            self.timings["nms"] += time.perf_counter() - t
        return [self._finish(r) for r in records]

    def _finish(self, r: dict) -> dict:
        mask = r.pop("_mask")
        if self.output_mode == "binary_mask":
            seg = mask
            area = int(mask.sum())
        elif self.output_mode == "uncompressed_rle":
            seg = mask
            area = rle.area(seg)
        else:
            seg = {"size": mask["size"], "counts": rle.counts_to_string(mask["counts"])}
            area = rle.area(mask)
        box = r.pop("_box").float()
        crop = r.pop("_crop")
        return {
            "segmentation": seg,
            "area": area,
            "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])],
            "predicted_iou": r["predicted_iou"],
            "point_coords": r["point_coords"],
            "stability_score": r["stability_score"],
            "crop_box": [float(crop[0]), float(crop[1]), float(crop[2] - crop[0]), float(crop[3] - crop[1])],
        }

    def _chunk(self, h: int, w: int) -> int:
        return max(1, int(CHUNK_BYTES // max(1, h * w * 4)))

    def _process_crop(
        self, image: np.ndarray, crop_box: list[int], layer: int, orig_hw: tuple[int, int]
    ) -> list[dict]:
        import time

        x0, y0, x1, y1 = crop_box
        crop = image[y0:y1, x0:x1, :]
        ch, cw = crop.shape[:2]
        t = time.perf_counter()
        self.predictor.set_image(crop)
        self.timings["encode"] += time.perf_counter() - t
        if self._bar is not None:
            self._bar.update()

        points_for_image = self.point_grids[layer] * np.array([cw, ch])[None, :]
        cands = _Candidates()
        for start in range(0, len(points_for_image), self.points_per_batch):
            pts = torch.as_tensor(
                points_for_image[start : start + self.points_per_batch],
                dtype=torch.float32,
                device=self.predictor.device,
            )
            self._process_batch(pts, (ch, cw), crop_box, orig_hw, cands)
            if self._bar is not None:
                self._bar.update()
        self.predictor.reset_predictor()
        data = cands.cat()
        if data is None:
            return []
        low, ious, points, stability, boxes = data

        t = time.perf_counter()
        keep = amg.nms(boxes.float(), ious, self.box_nms_thresh)
        self.timings["nms"] += time.perf_counter() - t

        t = time.perf_counter()
        # reported (and compared across crops): the boxes of the masks returned, as the reference
        # reports them; the filters' boxes can differ (the fast mode scales them up from low res,
        # where a right edge of 799 px could read 796)
        masks, final_boxes = self._final_masks(low[keep], (ch, cw), crop_box, orig_hw)
        offset = torch.tensor([x0, y0, x0, y0])
        # the kept candidates' values moved to the host once (on a GPU, per-item reads would each wait)
        keep_cpu = keep.cpu()
        ious_l = ious.cpu()[keep_cpu].tolist()
        stability_l = stability.cpu()[keep_cpu].tolist()
        points_l = (points.cpu()[keep_cpu] + torch.tensor([x0, y0])).tolist()
        records = [
            {
                "_mask": m,
                "_box": box + offset,
                "_crop": list(crop_box),
                "predicted_iou": iou,
                "point_coords": [pt],
                "stability_score": stab,
            }
            for m, box, iou, pt, stab in zip(masks, final_boxes, ious_l, points_l, stability_l)
        ]
        self.timings["encode_masks"] += time.perf_counter() - t
        return records

    def _decode(
        self,
        in_points: torch.Tensor,
        mask_input: torch.Tensor | None,
        multimask: bool,
        min_iou: float | None = None,
    ):
        labels = torch.ones(in_points.shape[0], 1, dtype=torch.int32, device=in_points.device)
        low, ious = self.predictor._decode(
            in_points[:, None, :],
            labels,
            mask_input=mask_input,
            multimask_output=multimask,
            min_iou=min_iou,
            decoder=self._decoder,
        )
        return low.flatten(0, 1), ious.flatten(0, 1)

    def _process_batch(
        self,
        points: torch.Tensor,
        crop_hw: tuple[int, int],
        crop_box: list[int],
        orig_hw: tuple[int, int],
        cands: _Candidates,
    ) -> None:
        import time

        t = time.perf_counter()
        size = self.predictor.image_size
        in_points = T.transform_coords(points, crop_hw, size, normalize=True)
        # the decoder need not upscale prompts whose every mask the IoU filter below drops (with
        # m2m every candidate is refined first, so all are needed)
        skip = self.pred_iou_thresh if self.pred_iou_thresh > 0.0 and not self.use_m2m else None
        low, ious = self._decode(in_points, None, self.multimask_output, min_iou=skip)
        m = low.shape[0] // points.shape[0]
        points = points.repeat_interleave(m, dim=0)
        if self.use_m2m:
            # refine each candidate once more with its own logits as the mask prompt
            prompt = torch.clamp(low, -32.0, 32.0)
            in_rep = in_points.repeat_interleave(m, dim=0)
            refined = [
                self._decode(
                    in_rep[i : i + self.points_per_batch], prompt[i : i + self.points_per_batch, None], False
                )
                for i in range(0, len(in_rep), self.points_per_batch)
            ]
            low = torch.cat([r[0] for r in refined])
            ious = torch.cat([r[1] for r in refined])
        self.timings["decode"] += time.perf_counter() - t

        t = time.perf_counter()
        if self.pred_iou_thresh > 0.0:
            keep = ious > self.pred_iou_thresh  # cheap: before anything is upsampled
            low, ious, points = low[keep], ious[keep], points[keep]
        if self.min_mask_region_area > 0 and len(low):
            a = self.min_mask_region_area
            low = T.clean_small_regions(low, self.mask_threshold, max_hole_area=a, max_sprinkle_area=a)
        ch, cw = crop_hw
        oh, ow = orig_hw
        if self.fast:  # score at the low-res logits' own size, aspect ratio restored
            f = low.shape[-1] / max(ch, cw)
            score_hw = (max(1, min(ch, round(ch * f))), max(1, min(cw, round(cw * f))))
        else:
            score_hw = crop_hw
        # by cells of the low-res grid (see kernels.cells) when the crop has many
        # more pixels than the logits, else (or for noise-like logits) upsampled a chunk at a time
        by_cells = (
            not self.fast
            and current(low.device).amg_cells
            and ch * cw >= CELL_MIN_SCALE * low.shape[-2] * low.shape[-1]
        )
        chunk = CELL_CHUNK if by_cells else self._chunk(*score_hw)
        for s in range(0, len(low), chunk):
            lo = low[s : s + chunk]
            stab, boxes = self._score(lo, score_hw, by_cells)
            keep = self._stable(stab)
            if not keep.any():
                continue
            boxes = boxes[keep]
            if self.fast:  # back to crop pixels
                scale = torch.tensor([cw / score_hw[1], ch / score_hw[0]] * 2, device=boxes.device)
                boxes = (boxes.float() * scale).floor().long()
            idx = keep.nonzero()[:, 0]
            edge = amg.is_box_near_crop_edge(boxes, crop_box, [0, 0, ow, oh])
            idx, boxes = idx[~edge], boxes[~edge]
            if len(idx):
                cands.add(lo[idx], ious[s : s + chunk][idx], points[s : s + chunk][idx], stab[idx], boxes)
        self.timings["filter"] += time.perf_counter() - t

    def _stable(self, stability: torch.Tensor) -> torch.Tensor:
        if self.stability_score_thresh > 0.0:
            return stability >= self.stability_score_thresh
        return torch.ones_like(stability, dtype=torch.bool)

    def _score(
        self, low: torch.Tensor, hw: tuple[int, int], by_cells: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Stability scores (N,) of the logits (N, h, w) upsampled to hw, and the boxes (N, 4) of the
        stable ones (zeros for the others)."""
        if by_cells:
            scored = amg.upsampled_stability_and_boxes(
                low, hw, self.mask_threshold, self.stability_score_offset, max_boundary=CELL_MAX_BOUNDARY
            )
            if scored is not None:
                return scored
        stab, boxes = [], []
        chunk = self._chunk(*hw)
        for s in range(0, len(low), chunk):
            up = F.interpolate(low[s : s + chunk, None], size=hw, mode="bilinear", align_corners=False)
            full = up[:, 0]
            stab.append(amg.stability_score(full, self.mask_threshold, self.stability_score_offset))
            keep = self._stable(stab[-1])
            boxes.append(torch.zeros(len(full), 4, dtype=torch.int64))
            if keep.any():
                boxes[-1][keep.cpu()] = amg.batched_mask_to_box(full[keep] > self.mask_threshold).cpu()
        return torch.cat(stab), torch.cat(boxes).to(low.device)

    def _final_masks(
        self, low: torch.Tensor, crop_hw: tuple[int, int], crop_box: list[int], orig_hw: tuple[int, int]
    ) -> tuple[list, torch.Tensor]:
        """Full-resolution masks of the kept candidates, placed in the whole image: dense bool arrays
        for 'binary_mask', uncompressed RLE otherwise (never all dense at once); and their boxes
        (N, 4) XYXY in crop pixels."""
        x0, y0, x1, y1 = crop_box
        oh, ow = orig_hw
        out, boxes = [], [torch.zeros(0, 4, dtype=torch.int64)]
        chunk = self._chunk(*crop_hw)
        for s in range(0, len(low), chunk):
            full = F.interpolate(
                low[s : s + chunk, None], size=crop_hw, mode="bilinear", align_corners=False
            )[:, 0]
            binary = full > self.mask_threshold
            boxes.append(amg.batched_mask_to_box(binary).cpu())
            for m in binary.cpu().numpy():
                if (x0, y0, x1, y1) != (0, 0, ow, oh):
                    placed = np.zeros((oh, ow), dtype=bool)
                    placed[y0:y1, x0:x1] = m
                    m = placed
                out.append(m if self.output_mode == "binary_mask" else rle.encode_uncompressed(m))
        return out, torch.cat(boxes)
