"""Prompt-free segmentation heads: SAM 2's frozen image encoder, a small trained part that stands in
for the prompt, and masks for a fixed set of classes with no click.

Two published designs share the code:

* ``tokens`` (AutoSAM, Hu et al., xhu248/AutoSAM; what Greenstand's AutoSAM 2 builds on): a copy of
  SAM 2's mask decoder with one learned output token per class plus background, in place of the
  prompt. The decoder copy is fine-tuned with the tokens. One decoder pass gives every class; a
  softmax over the tokens' masks gives a class map. The default: it learns shapes the prompt-driven
  decoder was never asked for, and costs one decoder call per image whatever the number of classes.
* ``dense`` (Shaharabany et al., "AutoSAM: adapting SAM to medical images by overloading the prompt
  encoder"): a small convolutional network turns the image embedding into SAM's dense prompt
  embedding, one per class, and SAM's own mask decoder (frozen) decodes it. Fewer trained weights,
  closest to SAM's behaviour; one decoder call per class.

A head is saved as a small file of its own (the decoder copy, or the prompt network plus the
decoder it must be used with) naming the SAM 2 variant, image size and checkpoint hash it was trained
on.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._files import atomic_write

FORMAT = "samkit-head"
FORMAT_VERSION = 1
KINDS = ("tokens", "dense")


class HeadError(ValueError):
    """A head file that cannot be used: not a head, made for another model, an unknown class."""


def _decoder_from_model(model) -> nn.Module:
    dec = copy.deepcopy(model.sam_mask_decoder).float()
    for p in dec.parameters():
        p.requires_grad_(True)
    return dec


class PromptFreeHead(nn.Module):
    """Masks of ``classes`` from an image embedding, with no prompt.

    Build one from a loaded model with :meth:`from_model` (weights initialised from its mask
    decoder), train it with :func:`samkit.heads.train_head`, :meth:`save` it and :meth:`load` it.
    ``head(image_embed, high_res_feats)`` returns logits (B, 1 + num_classes, 4h, 4w), background
    first; :meth:`predict` gives per-class masks at the image's size from an
    :class:`~samkit.ImagePredictor` holding an image.
    """

    def __init__(
        self,
        decoder: nn.Module,
        image_pe: torch.Tensor,
        no_mask_embed: torch.Tensor,
        classes: list[str],
        kind: str = "tokens",
        *,
        variant: str,
        image_size: int,
        checkpoint_sha256: str | None = None,
    ) -> None:
        super().__init__()
        if kind not in KINDS:
            raise HeadError(f"unknown head kind {kind!r}: one of {', '.join(KINDS)}")
        classes = [str(c) for c in classes]
        if not classes or len(set(classes)) != len(classes) or any(not c for c in classes):
            raise HeadError(f"a head needs one or more distinct, non-empty class names, got {classes}")
        self.kind, self.classes = kind, classes
        self.variant, self.image_size, self.checkpoint_sha256 = variant, int(image_size), checkpoint_sha256
        self.decoder = decoder
        c = decoder.transformer_dim
        k = len(classes) + 1
        self.register_buffer("image_pe", image_pe.detach().float().clone())
        self.register_buffer("no_mask_embed", no_mask_embed.detach().float().reshape(1, c, 1, 1).clone())
        if kind == "tokens":
            # one output token and hypernetwork per class (background first), started from SAM's
            # mask tokens and their MLPs; a little noise makes the classes differ from the first step
            g = torch.Generator().manual_seed(0)
            src = decoder.mask_tokens.weight.detach()
            init = torch.stack([src[i % src.shape[0]] for i in range(k)])
            self.class_tokens = nn.Parameter(init + 0.02 * torch.randn(init.shape, generator=g))
            mlps = decoder.output_hypernetworks_mlps
            self.hypernetworks = nn.ModuleList([copy.deepcopy(mlps[i % len(mlps)]) for i in range(k)])
        else:
            # the decoder is SAM's, frozen; the prompt network starts at SAM's "no prompt" embedding
            for p in decoder.parameters():
                p.requires_grad_(False)
            self.prompt_net = nn.Sequential(
                nn.Conv2d(c, c, 3, padding=1),
                nn.GELU(),
                nn.Conv2d(c, c * (k - 1), 1),
            )
            nn.init.zeros_(self.prompt_net[2].weight)
            with torch.no_grad():
                self.prompt_net[2].bias.copy_(self.no_mask_embed.reshape(c).repeat(k - 1))

    # --- construction --------------------------------------------------------------------------

    @classmethod
    def from_model(
        cls, model, classes: list[str], kind: str = "tokens", checkpoint_sha256: str | None = None
    ) -> PromptFreeHead:
        """A new head for ``model`` (a samkit SAM2Model), initialised from its mask decoder."""
        pe = model.sam_prompt_encoder
        dev = next(model.parameters()).device
        head = cls(
            _decoder_from_model(model),
            pe.get_dense_pe().float(),
            pe.no_mask_embed.weight.float(),
            classes,
            kind,
            variant=model.cfg.name,
            image_size=model.cfg.image_size,
            checkpoint_sha256=checkpoint_sha256,
        )
        return head.to(dev)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    # --- forward -------------------------------------------------------------------------------

    def forward(self, image_embed: torch.Tensor, high_res_feats: list[torch.Tensor]) -> torch.Tensor:
        """Logits (B, 1 + num_classes, 4h, 4w) for image embeddings (B, C, h, w) and the encoder's
        high-resolution features; channel 0 is the background."""
        from ..kernels.upscale import upscale_plain

        dec = self.decoder
        embed = image_embed.float()
        high = [f.float() for f in high_res_feats] if high_res_feats is not None else None
        b, c, h, w = embed.shape
        if self.kind == "tokens":
            tokens = self.class_tokens[None].expand(b, -1, -1)
            src = embed + self.no_mask_embed
            hs, keys = dec.transformer(src, self.image_pe, tokens, None, n_out=tokens.shape[1])
            hyper = torch.stack([mlp(hs[:, i]) for i, mlp in enumerate(self.hypernetworks)], dim=1)
            if dec.use_high_res_features:
                return upscale_plain(dec.output_upscaling, keys, hyper, (h, w), high)
            up = dec.output_upscaling(keys.transpose(1, 2).reshape(b, c, h, w))
            return (hyper @ up.flatten(2)).view(b, -1, 4 * h, 4 * w)
        n = len(self.classes)
        dense = self.prompt_net(embed).view(b, n, c, h, w)
        out = [embed.new_zeros(b, 1, 4 * h, 4 * w)]  # the background's logit: 0
        sparse = embed.new_zeros(b, 0, c)
        for i in range(n):
            masks, *_ = dec.predict_masks(embed, self.image_pe, sparse, dense[:, i], False, high)
            out.append(masks[:, 0:1])  # SAM's single-mask output
        return torch.cat(out, dim=1)

    # --- inference -----------------------------------------------------------------------------

    def check_model(self, model) -> None:
        """A clear error when ``model`` is not the variant (and image size) this head was trained on."""
        check_fits(self.describe(), model)

    def class_index(self, name: str) -> int:
        """The position of class ``name`` in :attr:`classes` (an error listing them when unknown)."""
        try:
            return self.classes.index(name)
        except ValueError:
            raise HeadError(
                f"this head has no class {name!r}; its classes: {', '.join(self.classes)}"
            ) from None

    @torch.inference_mode()
    def predict_features(
        self, image_embed: torch.Tensor, high_res_feats: list[torch.Tensor], orig_hw: list[tuple[int, int]]
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per image: masks (num_classes, H, W) bool at its original size and scores (num_classes,)
        (the mean class probability inside each mask; 0 for an empty mask)."""
        was_training = self.training
        self.eval()
        try:
            logits = self(image_embed, high_res_feats)
        finally:
            self.train(was_training)
        out = []
        for i, hw in enumerate(orig_hw):
            full = F.interpolate(logits[i : i + 1], size=tuple(hw), mode="bilinear", align_corners=False)
            probs = full.softmax(dim=1)[0]
            labels = probs.argmax(dim=0)
            masks = torch.stack([labels == k for k in range(1, probs.shape[0])])
            area = masks.flatten(1).sum(1)
            inside = (probs[1:] * masks).flatten(1).sum(1)
            scores = torch.where(area > 0, inside / area.clamp(min=1), torch.zeros_like(inside))
            out.append((masks.cpu().numpy(), scores.float().cpu().numpy()))
        return out

    def predict(self, predictor) -> tuple[np.ndarray, np.ndarray]:
        """Masks (num_classes, H, W) bool at the image's size and scores (num_classes,) for the image
        an :class:`~samkit.ImagePredictor` holds (``set_image`` first)."""
        if not getattr(predictor, "_is_image_set", False):
            raise RuntimeError("An image must be set with .set_image(...) before the head can predict.")
        self.check_model(predictor.model)
        feats = predictor._features
        return self.predict_features(feats["image_embed"], feats["high_res_feats"], predictor._orig_hw)[0]

    # --- files ---------------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "classes": list(self.classes),
            "variant": self.variant,
            "image_size": self.image_size,
            "checkpoint_sha256": self.checkpoint_sha256,
        }

    def save(self, path: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
        """Write the head (atomically): its weights, its classes and what it was trained on."""
        state = {k: v.detach().cpu() for k, v in self.state_dict().items()}
        doc = {"format": FORMAT, "version": FORMAT_VERSION, **self.describe(), "state_dict": state}
        if extra:
            doc["training"] = extra
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return atomic_write(path, lambda tmp: torch.save(doc, tmp))

    @classmethod
    def _read(cls, path: Path) -> dict:
        from ..configs import VARIANTS

        if not path.is_file():
            raise HeadError(f"head file not found: {path}")
        try:
            doc = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # a truncated or foreign file
            raise HeadError(f"cannot read head file {path}: {type(e).__name__}: {e}") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise HeadError(f"{path} is not a samkit head (samkit train-head writes them)")
        if doc.get("version", 0) > FORMAT_VERSION:
            raise HeadError(f"{path} was written by a newer samkit (head format {doc.get('version')})")
        if doc.get("variant") not in VARIANTS:
            raise HeadError(f"{path} was trained on {doc.get('variant')!r}, which this samkit does not know")
        return doc

    @classmethod
    def read_info(cls, path: str | os.PathLike) -> dict[str, Any]:
        """What a head file says of itself (kind, classes, variant, image size, checkpoint hash),
        checked, without building the head: for choosing the model before loading anything."""
        doc = cls._read(Path(path).expanduser())
        return {k: doc.get(k) for k in ("kind", "classes", "variant", "image_size", "checkpoint_sha256")}

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device | None = "cpu") -> PromptFreeHead:
        """A head saved by :meth:`save`."""
        from ..checkpoints import build_model
        from ..configs import VARIANTS

        path = Path(path).expanduser()
        doc = cls._read(path)
        variant = doc["variant"]
        import dataclasses

        cfg = dataclasses.replace(VARIANTS[variant], image_size=int(doc["image_size"]))
        skeleton = build_model(cfg)  # random weights: only the shapes and the module layout are used
        head = cls.from_model(skeleton, doc["classes"], doc["kind"], doc.get("checkpoint_sha256"))
        try:
            head.load_state_dict(doc["state_dict"])
        except RuntimeError as e:
            raise HeadError(f"{path}: weights do not fit a {doc['kind']} head for {variant}: {e}") from None
        head.training_info = doc.get("training", {})
        return head.to(device if device is not None else "cpu").eval()


def head_annotations(
    masks: np.ndarray,
    scores: np.ndarray,
    classes: list[str],
    instances: bool = False,
    min_area: int = 1,
) -> list[dict[str, Any]]:
    """COCO-style annotations of a head's masks (num_classes, H, W): one per class with pixels, or
    with ``instances`` one per 8-connected component; ``category_id`` is the class's position + 1
    and ``category`` its name. Components smaller than ``min_area`` pixels are left out."""
    from .. import rle
    from ..transforms import connected_components
    from ..visualize import mask_stats

    out: list[dict[str, Any]] = []
    for k, (mask, score) in enumerate(zip(masks, scores)):
        parts = [mask]
        if instances and mask.any():
            labels, _ = connected_components(mask[None])
            parts = [labels[0] == i for i in range(1, int(labels.max()) + 1)]
        for part in parts:
            stats = mask_stats(part)
            if stats["area"] < max(min_area, 1):
                continue
            out.append(
                {
                    "segmentation": rle.encode(part),
                    "area": stats["area"],
                    "bbox": [float(v) for v in stats["bbox"]],
                    "category_id": k + 1,
                    "category": classes[k],
                    "score": round(float(score), 5),
                }
            )
    return out


def check_fits(info: dict[str, Any], model) -> None:
    """A clear error when ``model`` is not the variant and image size a head (:meth:`PromptFreeHead.read_info`
    or ``describe()``) was trained on."""
    name, size = model.cfg.name, model.cfg.image_size
    if name != info["variant"] or size != int(info["image_size"]):
        raise HeadError(
            f"this head was trained on {info['variant']} at {info['image_size']} px, not {name} at {size} px: "
            f"load it with --model {info['variant']}"
        )
