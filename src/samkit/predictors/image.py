"""ImagePredictor: encode an image once, then predict masks for many prompts.

Same methods and arguments as the reference ``SAM2ImagePredictor``, so switching is one import.
Inputs are validated up front: every mistake is a ValueError/RuntimeError that says what was wrong.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .. import transforms as T
from ..modeling import SAM2Model
from ..modeling.mask_decoder import DecoderInputs
from ..prompts import as_float_tensor, box_tensor, point_tensors
from ._base import ModelBacked, unexpected_keyword
from ._graphs import graphs_for

__all__ = ["ImagePredictor"]


class ImagePredictor(ModelBacked):
    """Predict masks for one image (``set_image`` + ``predict``) or a batch (``set_image_batch`` +
    ``predict_batch``).

    Args:
        sam_model: a :class:`~samkit.modeling.SAM2Model` (see :func:`samkit.load_model`).
        mask_threshold: logit threshold for binary masks.
        max_hole_area: fill background regions up to this area (in low-res 256x256 pixels).
        max_sprinkle_area: remove foreground specks up to this area (low-res pixels).
    """

    def __init__(
        self,
        sam_model: SAM2Model,
        mask_threshold: float = 0.0,
        max_hole_area: float = 0.0,
        max_sprinkle_area: float = 0.0,
        **kwargs,
    ) -> None:
        if kwargs:  # a misspelt argument must not be dropped silently
            raise unexpected_keyword(type(self).__name__, kwargs, ImagePredictor.__init__)
        if not isinstance(sam_model, SAM2Model):
            raise TypeError(
                f"ImagePredictor needs a samkit SAM2Model (samkit.load_model), got {type(sam_model).__name__}"
            )
        for name, v in (("max_hole_area", max_hole_area), ("max_sprinkle_area", max_sprinkle_area)):
            if not np.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be >= 0, got {v}")
        if not np.isfinite(mask_threshold):
            raise ValueError(f"mask_threshold must be finite, got {mask_threshold}")
        self.model = sam_model
        self.mask_threshold = float(mask_threshold)
        self.max_hole_area = float(max_hole_area)
        self.max_sprinkle_area = float(max_sprinkle_area)
        self.reset_predictor()

    # --- embedding ------------------------------------------------------------------------------

    def reset_predictor(self) -> None:
        """Forget the current image(s) and their embeddings."""
        self._is_image_set = False
        self._features: dict | None = None
        # per image: the mask decoder's image side for prompts without a mask input (prepare_image)
        self._prepared: dict = {}
        self._orig_hw: list[tuple[int, int]] | None = None
        self._is_batch = False

    @torch.inference_mode()
    def _encode(self, images: list[np.ndarray]) -> None:
        batch = T.preprocess_images(images, self.image_size, self.device)
        embed, high_res = self.model.encode_images(batch)
        self._features = {"image_embed": embed, "high_res_feats": high_res}
        self._orig_hw = [tuple(im.shape[:2]) for im in images]
        self._is_image_set = True

    def set_image(self, image) -> None:
        """Compute the embedding of one image: an HxWx3 uint8 RGB array or a PIL image
        (grayscale and RGBA are converted)."""
        self.reset_predictor()
        self._encode([T.to_rgb_array(image)])

    def set_image_batch(self, image_list: Sequence) -> None:
        """Compute embeddings of several images in one encoder batch; use :meth:`predict_batch` next."""
        self.reset_predictor()
        if isinstance(image_list, np.ndarray) or not isinstance(image_list, Sequence):
            raise TypeError("set_image_batch expects a list of images (HxWx3 uint8 arrays or PIL images)")
        if len(image_list) == 0:
            raise ValueError("set_image_batch got an empty list")
        images = []
        for i, im in enumerate(image_list):
            try:
                images.append(T.to_rgb_array(im))
            except (TypeError, ValueError) as e:
                raise type(e)(f"image {i}: {e}") from None
        self._encode(images)
        self._is_batch = True

    def set_embedding(
        self, image_embed: torch.Tensor, high_res_feats: list[torch.Tensor], orig_hw: tuple[int, int]
    ) -> None:
        """Use a previously computed embedding (e.g. from a cache) for one image of size ``orig_hw``:
        image_embed (1, C, h, w) and high_res_feats as ``get_image_embedding``/``_features`` hold them."""
        self.reset_predictor()
        self._features = {"image_embed": image_embed, "high_res_feats": list(high_res_feats)}
        self._orig_hw = [tuple(int(v) for v in orig_hw)]
        self._is_image_set = True

    def get_image_embedding(self) -> torch.Tensor:
        """The (B, C, 64, 64) image embedding of the current image(s)."""
        if not self._is_image_set:
            raise RuntimeError("An image must be set with .set_image(...) to generate an embedding.")
        return self._features["image_embed"]

    # --- prompts ------------------------------------------------------------------------------

    def _prep_prompts(
        self, point_coords, point_labels, box, mask_logits, normalize_coords: bool, img_idx: int = -1
    ):
        """Validate prompts and move them into the model frame.

        Returns (mask_input (B,1,h,w) | None, coords (B,N,2) | None, labels (B,N) | None, box (B,2,2) | None).
        """
        dev = self.device
        hw = self._orig_hw[img_idx]
        size = self.image_size
        coords = labels = boxes = mask_input = None
        if point_coords is not None and point_labels is None:
            raise ValueError("point_labels must be supplied if point_coords is supplied.")
        if point_labels is not None and point_coords is None:
            raise ValueError("point_coords must be supplied if point_labels is supplied.")
        if point_coords is not None:
            pts, labels = point_tensors(point_coords, point_labels)
            coords = T.transform_coords(pts, hw, size, normalize_coords)
            if coords.ndim == 2:
                coords, labels = coords[None], labels[None]
        if box is not None:
            boxes = T.transform_boxes(box_tensor(box), hw, size, normalize_coords)
            if coords is not None and coords.shape[0] != boxes.shape[0]:
                raise ValueError(f"{boxes.shape[0]} boxes but {coords.shape[0]} point sets; they must match")
        if mask_logits is not None:
            m = as_float_tensor(mask_logits, "mask_input")
            if m.ndim == 3:
                m = m[None]
            want = self.model.sam_prompt_encoder.mask_input_size
            if m.ndim != 4 or m.shape[1] != 1 or tuple(m.shape[-2:]) != tuple(want):
                raise ValueError(
                    f"mask_input must have shape (1, {want[0]}, {want[1]}) or (B, 1, {want[0]}, {want[1]}) "
                    f"(low-res logits from a previous predict), got {tuple(m.shape)}"
                )
            n = coords.shape[0] if coords is not None else (boxes.shape[0] if boxes is not None else 1)
            if m.shape[0] not in (1, n):
                raise ValueError(f"{m.shape[0]} mask inputs for {n} prompts")
            mask_input = m
        # validated where they came from; moved to the model's device once, at the end
        return tuple(None if t is None else t.to(dev) for t in (mask_input, coords, labels, boxes))

    # --- prediction ---------------------------------------------------------------------------

    def predict(
        self,
        point_coords=None,
        point_labels=None,
        box=None,
        mask_input=None,
        multimask_output: bool = True,
        return_logits: bool = False,
        normalize_coords: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Predict masks for prompts on the image given to :meth:`set_image`.

        Args:
            point_coords: (N, 2) (x, y) pixels, or (B, N, 2) for B objects at once.
            point_labels: (N,) or (B, N): 1 foreground, 0 background.
            box: (4,) x0, y0, x1, y1 pixels, or (B, 4).
            mask_input: (1, 256, 256) low-res logits from a previous call (or (B, 1, 256, 256)).
            multimask_output: return 3 candidates (best for one ambiguous click) instead of 1.
            return_logits: return logits instead of boolean masks.
            normalize_coords: coordinates are pixels of the original image (else already in [0, 1]).

        Returns:
            masks (M, H, W) float32 of 0/1 (or logits), scores (M,), low-res logits (M, 256, 256);
            with a leading B axis for batched prompts.
        """
        if not self._is_image_set:
            raise RuntimeError("An image must be set with .set_image(...) before mask prediction.")
        if self._is_batch:
            raise RuntimeError("the predictor holds a batch of images (set_image_batch); use predict_batch")
        mask_input, coords, labels, boxes = self._prep_prompts(
            point_coords, point_labels, box, mask_input, normalize_coords
        )
        masks, ious, low_res = self._predict(
            coords, labels, boxes, mask_input, multimask_output, return_logits
        )
        return self._to_numpy(masks), self._to_numpy(ious), self._to_numpy(low_res)

    def predict_batch(
        self,
        point_coords_batch: Sequence | None = None,
        point_labels_batch: Sequence | None = None,
        box_batch: Sequence | None = None,
        mask_input_batch: Sequence | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        normalize_coords: bool = True,
    ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        """:meth:`predict` for each image of :meth:`set_image_batch`; each argument is a list with one
        entry per image (or None). Returns lists of masks, scores and low-res logits."""
        if not self._is_image_set:
            raise RuntimeError("An image must be set with .set_image_batch(...) before mask prediction.")
        if not self._is_batch:
            raise RuntimeError(
                "predict_batch needs images set with set_image_batch; use predict after set_image"
            )
        n = len(self._orig_hw)
        args = {
            "point_coords_batch": point_coords_batch,
            "point_labels_batch": point_labels_batch,
            "box_batch": box_batch,
            "mask_input_batch": mask_input_batch,
        }
        for name, value in args.items():
            if value is not None and len(value) != n:
                raise ValueError(f"{name} has {len(value)} entries for {n} images")
        out_masks, out_ious, out_low = [], [], []
        for i in range(n):
            pick = [None if v is None else v[i] for v in args.values()]
            mask_input, coords, labels, boxes = self._prep_prompts(
                pick[0], pick[1], pick[2], pick[3], normalize_coords, img_idx=i
            )
            masks, ious, low_res = self._predict(
                coords, labels, boxes, mask_input, multimask_output, return_logits, img_idx=i
            )
            out_masks.append(self._to_numpy(masks))
            out_ious.append(self._to_numpy(ious))
            out_low.append(self._to_numpy(low_res))
        return out_masks, out_ious, out_low

    @staticmethod
    def _to_numpy(t: torch.Tensor) -> np.ndarray:
        # float32 for masks too (0.0 / 1.0), exactly what the reference returns; .float() and .cpu()
        # are no-ops (no copy) for float32 CPU tensors
        return t.squeeze(0).float().cpu().numpy()

    @torch.inference_mode()
    def _predict(
        self,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        img_idx: int = -1,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Prompts already in the model frame (B, N, 2) / (B, N) / (B, 2, 2) / (B, 1, h, w).

        Returns masks (B, M, H, W), scores (B, M), low-res logits (B, M, h, w) clamped to +-32.
        """
        low_res, ious = self._decode(point_coords, point_labels, boxes, mask_input, multimask_output, img_idx)
        # float 0/1 masks (what the reference returns) come out of the upsampling already
        # thresholded, band by band: the 40 MB of logits of a 2250x1500 click are never written
        masks = T.postprocess_masks(
            low_res,
            self._orig_hw[img_idx],
            self.mask_threshold,
            self.max_hole_area,
            self.max_sprinkle_area,
            binary=not return_logits,
            compiled=self.model.policy.compile,
        )
        low_res = torch.clamp(low_res, -32.0, 32.0)
        return masks, ious, low_res

    @torch.inference_mode()
    def _decode(
        self,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        img_idx: int = -1,
        min_iou: float | None = None,
        decoder: torch.nn.Module | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt encoder + mask decoder only: low-res logits (B, M, h, w) float32 (not clamped) and
        scores (B, M), with no upsampling — callers upsample only what they keep. ``min_iou``: see
        the mask decoder (prompts whose masks all score at most this come back as -inf masks).
        ``decoder``: a copy of the model's mask decoder in another dtype (bfloat16) to decode with;
        the image side is cast to its ``image_dtype``, the prompt tokens to its token weights'
        dtype. Default: the model's decoder, or for a ``precision="bf16"``
        model its :meth:`~samkit.modeling.SAM2Model.fast_mask_decoder`."""
        if not self._is_image_set:
            raise RuntimeError("An image must be set with .set_image(...) before mask prediction.")
        points = None if point_coords is None else (point_coords, point_labels)
        if boxes is not None:
            # boxes go first, as two labelled corner points (labels 2 and 3)
            corners = boxes.reshape(-1, 2, 2)
            corner_labels = torch.tensor([[2, 3]], dtype=torch.int32, device=boxes.device).expand(
                corners.shape[0], 2
            )
            if points is None:
                points = (corners, corner_labels)
            else:
                points = (
                    torch.cat([corners, points[0]], dim=1),
                    torch.cat([corner_labels, points[1]], dim=1),
                )

        model = self.model
        if decoder is None:
            # the fast path decodes the image side in bf16 too where bf16 is fast (tokens stay fp32)
            decoder = model.fast_mask_decoder() if model.precision == "bf16" else model.sam_mask_decoder
        dt = decoder.image_dtype
        prompt_encoder = model.sam_prompt_encoder

        def image_side(dense):
            # the image's tensors in the decoder's dtype (casting them costs copies on every call
            # for a bf16 decoder: done once per image when the prepared side is cached)
            embed = self._features["image_embed"][img_idx].unsqueeze(0)
            high_res = [f[img_idx].unsqueeze(0).to(dt) for f in self._features["high_res_feats"]]
            pe = prompt_encoder.get_dense_pe()
            return embed.to(dt), dense.to(dt), pe.to(dt), high_res

        if mask_input is not None:
            sparse, dense = prompt_encoder(points=points, boxes=None, masks=mask_input)
            embed, dense, pe, high_res = image_side(dense)
            low_res, ious, _, _ = decoder(
                image_embeddings=embed,
                image_pe=pe,
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask_output,
                repeat_image=points is not None and points[0].shape[0] > 1,
                high_res_features=high_res,
                min_iou=min_iou,
            )
            return low_res.float(), ious.float()

        # every click on this image starts from the same image side: compute it once
        key = (img_idx % len(self._orig_hw), dt)
        cached = self._prepared.get(key)
        # keyed to the features themselves too, so that features swapped in by hand are not
        # answered from another image's cache
        if cached is None or cached[0] is not self._features:
            no_mask_dense = prompt_encoder(points=None, boxes=None, masks=None)[1]
            embed, dense, pe, high_res = image_side(no_mask_dense)
            cached = (self._features, decoder.prepare_image(embed, dense, pe, high_res))
            self._prepared[key] = cached
        prepared = cached[1]

        def run(prep: DecoderInputs, coords, labels) -> tuple[torch.Tensor, torch.Tensor]:
            # the decoder reads the image side from `prep` only
            pts = None if coords is None else (coords, labels)
            sparse, dense = prompt_encoder(points=pts, boxes=None, masks=None)
            low_res, ious, _, _ = decoder(
                image_embeddings=None,
                image_pe=prep.image_pe,
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask_output,
                repeat_image=pts is not None and coords.shape[0] > 1,
                prepared=prep,
                min_iou=min_iou,
            )
            return low_res.float(), ious.float()

        if points is not None and min_iou is None and self._use_cuda_graphs():
            # on a GPU a click is launch-bound: replay it as a recorded CUDA graph (same bits)
            return graphs_for(decoder).run(run, prepared, points[0], points[1], key=(multimask_output,))
        return run(prepared, *(points or (None, None)))

    def _use_cuda_graphs(self) -> bool:
        return self.model.policy.cuda_graphs
