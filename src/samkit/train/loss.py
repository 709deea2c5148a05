"""The SAM 2 training loss over every prediction step of every frame: focal and dice on the best of
the candidate masks, an L1 (or MSE) loss on the predicted IoUs, and a focal loss on the object score.
The same terms, weights and reductions as Meta's ``training.loss_fns.MultiStepMultiMasksAndIous``."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F

from .forward import FrameResult

TERMS = ("loss_mask", "loss_dice", "loss_iou", "loss_class")


@dataclass(frozen=True)
class LossWeights:
    """Defaults: Meta's SAM 2.1 fine-tuning (mask focal 20, dice 1, IoU 1 as L1 on every candidate,
    object score 1)."""

    mask: float = 20.0
    dice: float = 1.0
    iou: float = 1.0
    object_score: float = 1.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    supervise_all_iou: bool = True
    iou_l1: bool = True
    object_score_alpha: float = -1.0
    object_score_gamma: float = 0.0


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """Per-element sigmoid focal loss (RetinaNet); alpha < 0 disables the class weighting."""
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss


def dice_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(N, M, H, W) -> (N, M): 1 - (2 |p t| + 1) / (|p| + |t| + 1) with p = sigmoid(logits)."""
    p = logits.sigmoid().flatten(2)
    t = targets.flatten(2)
    return 1 - (2 * (p * t).sum(-1) + 1) / (p.sum(-1) + t.sum(-1) + 1)


def mask_iou(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(N, M, H, W) -> (N, M) IoU of the thresholded logits with the targets (an empty union gives 0)."""
    pred = logits.flatten(2) > 0
    gt = targets.flatten(2) > 0
    inter = (pred & gt).sum(-1).float()
    union = (pred | gt).sum(-1).float()
    return inter / union.clamp(min=1.0)


def num_objects_global(local: int, device: torch.device) -> float:
    """Objects per process, averaged over a distributed run (at least 1): the loss normalizer."""
    n = torch.tensor(float(local), device=device)
    world = 1
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(n)
        world = dist.get_world_size()
    return max(n.item() / world, 1.0)


class MultiStepLoss:
    """``loss(results, targets)`` with results from :func:`samkit.train.forward.train_forward` and
    targets (T, O, H, W) bool masks; returns a dict of the four terms and ``"total"`` (their weighted
    sum), summed over frames and steps and divided by the number of objects."""

    def __init__(self, weights: LossWeights | None = None) -> None:
        self.w = weights or LossWeights()

    def __call__(self, results: list[FrameResult], targets: torch.Tensor) -> dict[str, torch.Tensor]:
        if len(results) != targets.shape[0]:
            raise ValueError(f"{len(results)} frames of predictions for {targets.shape[0]} frames of masks")
        n = num_objects_global(targets.shape[1], targets.device)
        totals: dict[str, torch.Tensor] = {}
        for res, tgt in zip(results, targets):
            target = tgt.unsqueeze(1).float()  # (O, 1, H, W)
            for masks, ious, obj in zip(res.multimasks, res.ious, res.object_score_logits):
                for k, v in self._step(masks, target, ious, obj, n).items():
                    totals[k] = totals[k] + v if k in totals else v
        w = self.w
        weights = {"loss_mask": w.mask, "loss_dice": w.dice, "loss_iou": w.iou, "loss_class": w.object_score}
        total = sum(totals[k] * weights[k] for k in TERMS if weights[k] != 0)
        return {**totals, "total": total}

    def _step(
        self, masks: torch.Tensor, target: torch.Tensor, ious: torch.Tensor, obj: torch.Tensor, n: float
    ) -> dict[str, torch.Tensor]:
        w = self.w
        target = target.expand_as(masks)
        focal = focal_loss(masks, target, w.focal_alpha, w.focal_gamma).flatten(2).mean(-1) / n  # (O, M)
        dice = dice_loss(masks, target) / n
        actual = mask_iou(masks, target)
        iou = (F.l1_loss if w.iou_l1 else F.mse_loss)(ious, actual, reduction="none") / n
        present = torch.any((target[:, 0] > 0).flatten(1), dim=-1)[..., None].float()  # (O, 1)
        cls = focal_loss(obj, present, w.object_score_alpha, w.object_score_gamma).mean(1).sum() / n
        if masks.shape[1] > 1:
            # only the candidate closest to the target (by focal + dice) is trained toward it
            best = torch.argmin(focal * w.mask + dice * w.dice, dim=-1)
            rows = torch.arange(masks.shape[0], device=masks.device)
            focal, dice = focal[rows, best].unsqueeze(1), dice[rows, best].unsqueeze(1)
            iou = iou.mean(dim=-1, keepdim=True) if w.supervise_all_iou else iou[rows, best].unsqueeze(1)
        # masks and IoUs are trained only where the object is present
        return {
            "loss_mask": (focal * present).sum(),
            "loss_dice": (dice * present).sum(),
            "loss_iou": (iou * present).sum(),
            "loss_class": cls,
        }
