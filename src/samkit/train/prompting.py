"""Simulated user prompts for training and evaluation: a box from a mask (with noise), a click sampled
in the error region between a prediction and the ground truth, and the settings of the interactive
simulation Meta trains SAM 2 with.

Randomness: decisions (points or a mask? how many conditioning frames? which frames?) come from a
``numpy.random.Generator``; pixel-level noise (the click position, the box jitter) from torch's
generator, so a run seeded the same way takes the same prompts, and the reference trainer driven by
the same two streams takes the same ones too (see tests/train/test_parity.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class PromptSimulation:
    """How prompts are simulated on a training clip. Defaults: Meta's SAM 2.1 fine-tuning
    (``sam2.1_hiera_b+_MOSE_finetune.yaml``).

    - ``prob_points``: a clip is prompted with clicks/boxes (else with its first frame's masks);
      images (one frame) always get clicks or boxes.
    - ``prob_box``: given clicks, a box instead of a first click.
    - ``num_init_cond_frames`` (``rand_init_cond_frames``: 1 to it, at random): frames prompted before
      tracking; the first frame always is one.
    - ``num_frames_to_correct`` (``rand_frames_to_correct``: from the conditioning frames' count to it):
      frames that receive ``num_correction_points`` correction clicks, each sampled in the error of the
      previous step's mask (from the ground truth alone with ``prob_sample_from_gt``).
    - ``add_all_frames_to_correct_as_cond``: a corrected frame becomes a conditioning frame.
    - ``point_sampling``: "uniform" (a random error pixel, training) or "center" (the error pixel
      farthest from the error's boundary, the evaluation protocol).
    """

    prob_points: float = 0.5
    prob_box: float = 0.5
    num_init_cond_frames: int = 2
    rand_init_cond_frames: bool = True
    num_frames_to_correct: int = 2
    rand_frames_to_correct: bool = True
    add_all_frames_to_correct_as_cond: bool = True
    num_correction_points: int = 7
    prob_sample_from_gt: float = 0.1
    point_sampling: str = "uniform"

    def __post_init__(self) -> None:
        for name in ("prob_points", "prob_box", "prob_sample_from_gt"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v}")
        if self.num_init_cond_frames < 1:
            raise ValueError(f"num_init_cond_frames must be >= 1, got {self.num_init_cond_frames}")
        if self.num_correction_points < 0:
            raise ValueError(f"num_correction_points must be >= 0, got {self.num_correction_points}")
        if self.prob_points > 0 and self.num_frames_to_correct < self.num_init_cond_frames:
            raise ValueError("num_frames_to_correct must be >= num_init_cond_frames")
        if self.point_sampling not in ("uniform", "center"):
            raise ValueError(f"point_sampling must be 'uniform' or 'center', got {self.point_sampling!r}")

    @classmethod
    def evaluation(cls, correction_points: int = 0) -> PromptSimulation:
        """Validation: videos get their first frame's masks; images one centre click (plus
        ``correction_points`` centre corrections); no randomness."""
        return cls(
            prob_points=0.0,
            prob_box=0.0,
            num_init_cond_frames=1,
            rand_init_cond_frames=False,
            num_frames_to_correct=1,
            rand_frames_to_correct=False,
            add_all_frames_to_correct_as_cond=False,
            num_correction_points=correction_points,
            prob_sample_from_gt=0.0,
            point_sampling="center",
        )


def mask_to_box(masks: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) bool -> (B, 1, 4) integer (x0, y0, x1, y1), inclusive pixel bounds; an empty mask
    gives (W, H, -1, -1)."""
    b, _, h, w = masks.shape
    xs = torch.arange(w, device=masks.device, dtype=torch.int32).expand(h, w)
    ys = torch.arange(h, device=masks.device, dtype=torch.int32)[:, None].expand(h, w)
    x0 = torch.where(masks, xs, w).flatten(-2).amin(-1)
    x1 = torch.where(masks, xs, -1).flatten(-2).amax(-1)
    y0 = torch.where(masks, ys, h).flatten(-2).amin(-1)
    y1 = torch.where(masks, ys, -1).flatten(-2).amax(-1)
    return torch.stack([x0, y0, x1, y1], dim=-1)


def box_prompt(
    masks: torch.Tensor, noise: float = 0.1, noise_bound: float = 20.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """A box around each mask as two corner points (labels 2 and 3), each side moved by up to
    ``noise`` of the box's size (at most ``noise_bound`` pixels), clamped to the image.

    masks: (B, 1, H, W) bool -> points (B, 2, 2) float, labels (B, 2) int32."""
    b, _, h, w = masks.shape
    device = masks.device
    box = mask_to_box(masks)  # (B, 1, 4)
    labels = torch.tensor([2, 3], dtype=torch.int32, device=device).repeat(b).reshape(b, 2)
    if noise > 0.0:
        bound = torch.tensor(noise_bound, device=device)
        dx = torch.min((box[..., 2] - box[..., 0]) * noise, bound)
        dy = torch.min((box[..., 3] - box[..., 1]) * noise, bound)
        jitter = (2 * torch.rand(b, 1, 4, device=device) - 1) * torch.stack((dx, dy, dx, dy), dim=-1)
        box = box + jitter
        hi = torch.tensor([w, h, w, h], device=device) - 1
        box = torch.minimum(torch.maximum(box, torch.zeros_like(hi)), hi)
    return box.reshape(b, 2, 2).float(), labels


def _errors(gt: torch.Tensor, pred: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    if gt.dtype != torch.bool or gt.dim() != 4 or gt.shape[1] != 1:
        raise ValueError(f"ground-truth masks must be (B, 1, H, W) bool, got {tuple(gt.shape)} {gt.dtype}")
    if pred is None:
        pred = torch.zeros_like(gt)
    if pred.shape != gt.shape or pred.dtype != torch.bool:
        raise ValueError("predicted masks must be bool and shaped like the ground truth")
    return gt & ~pred, ~gt & pred  # false negatives (a click there is positive), false positives


def click_uniform(gt: torch.Tensor, pred: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One click per mask at a uniformly random pixel of the error (a positive click in a missed
    region, a negative one in a false alarm); with no error, a negative click on the background.

    gt, pred: (B, 1, H, W) bool (pred None = nothing predicted) -> points (B, 1, 2) float (x, y),
    labels (B, 1) int32."""
    fn, fp = _errors(gt, pred)
    b, _, h, w = gt.shape
    exact = torch.all((fn | fp).flatten(2) == 0, dim=2)[..., None, None]
    # one uniform score per pixel and per kind; the largest valid one wins
    score = torch.rand(b, 1, h, w, 2, device=gt.device)
    score[..., 0] *= fp | (exact & ~gt)
    score[..., 1] *= fn
    idx = score.flatten(2).argmax(dim=2)
    labels = (idx % 2).to(torch.int32)
    pix = idx // 2
    return torch.stack([pix % w, pix // w], dim=2).float(), labels


def click_center(gt: torch.Tensor, pred: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One click per mask at the error pixel farthest from the error region's boundary (the image
    border counts as outside): positive if it lies in a missed region, negative in a false alarm."""
    from scipy.ndimage import distance_transform_edt

    fn, fp = _errors(gt, pred)
    b, _, h, w = gt.shape
    points = torch.zeros(b, 1, 2)
    labels = torch.ones(b, 1, dtype=torch.int32)
    for i in range(b):
        dists = []
        for region in (fn[i, 0], fp[i, 0]):
            padded = np.pad(region.cpu().numpy(), 1)
            dists.append(distance_transform_edt(padded)[1:-1, 1:-1].ravel())
        best = [int(np.argmax(d)) for d in dists]
        positive = dists[0][best[0]] > dists[1][best[1]]
        pix = best[0] if positive else best[1]
        points[i, 0, 0], points[i, 0, 1] = pix % w, pix // w
        labels[i, 0] = int(positive)
    return points.to(gt.device), labels.to(gt.device)


def next_click(gt: torch.Tensor, pred: torch.Tensor | None, method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`click_uniform` or :func:`click_center`."""
    if method == "uniform":
        return click_uniform(gt, pred)
    if method == "center":
        return click_center(gt, pred)
    raise ValueError(f"unknown click sampling {method!r}: 'uniform' or 'center'")


def add_points(
    points: tuple[torch.Tensor, torch.Tensor] | None, new: tuple[torch.Tensor, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Append clicks (coords (B, n, 2), labels (B, n)) to a prompt."""
    if points is None:
        return new
    return torch.cat([points[0], new[0]], dim=1), torch.cat([points[1], new[1]], dim=1)


@dataclass
class ClipPrompts:
    """The prompt plan of one clip: which frames are conditioning frames, their prompts, which frames
    get correction clicks."""

    use_points: bool
    init_cond_frames: list[int]
    points: dict[int, tuple[torch.Tensor, torch.Tensor]]
    masks: dict[int, torch.Tensor]
    frames_to_correct: list[int]
    num_frames: int

    @property
    def processing_order(self) -> list[int]:
        """Conditioning frames first (they make the memory), then the others in time order."""
        rest = [t for t in range(self.num_frames) if t not in self.init_cond_frames]
        return list(self.init_cond_frames) + rest


def plan_prompts(
    sim: PromptSimulation, gt: dict[int, torch.Tensor], num_frames: int, rng: np.random.Generator
) -> ClipPrompts:
    """Draw the prompts of a clip (gt[t]: (B, 1, H, W) bool masks of frame t), in Meta's order of
    random draws."""
    prob_points = sim.prob_points
    n_correct, n_init = sim.num_frames_to_correct, sim.num_init_cond_frames
    if num_frames == 1:
        # an image: always clicks (or a box), corrected on its only frame
        prob_points, n_correct, n_init = 1.0, 1, 1
    use_points = bool(rng.random() < prob_points)
    if sim.rand_init_cond_frames and n_init > 1:
        n_init = int(rng.integers(1, n_init, endpoint=True))
    if use_points and sim.rand_frames_to_correct and n_correct > n_init:
        n_correct = int(rng.integers(n_init, n_correct, endpoint=True))
    n_init = min(n_init, num_frames)
    init = [0]
    if n_init > 1:
        init += rng.choice(np.arange(1, num_frames), n_init - 1, replace=False).tolist()
    others = [t for t in range(num_frames) if t not in init]
    points: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    masks: dict[int, torch.Tensor] = {}
    for t in init:
        if not use_points:
            masks[t] = gt[t]
        elif rng.random() < sim.prob_box:
            points[t] = box_prompt(gt[t])
        else:
            points[t] = next_click(gt[t], None, sim.point_sampling)
    if not use_points:
        to_correct: list[int] = []
    elif n_correct <= n_init:
        to_correct = list(init)
    else:
        extra = min(n_correct - n_init, len(others))
        to_correct = list(init) + rng.choice(np.array(others), extra, replace=False).tolist()
    return ClipPrompts(use_points, init, points, masks, to_correct, num_frames)
