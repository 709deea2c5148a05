"""Training a prompt-free head on cached image embeddings: the encoder runs once per image (and
augmentation), then epochs over the cached embeddings cost only the decoder."""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .._files import atomic_write
from .data import AUGMENTATIONS, ClassImages, EmbeddingCache, augment, default_cache_dir
from .model import HeadError, PromptFreeHead


@dataclass(frozen=True)
class HeadSettings:
    """How a head is trained. The defaults suit a few hundred images of one or two classes."""

    kind: str = "tokens"
    epochs: int = 30
    steps: int | None = None  # total optimizer steps instead of epochs
    lr: float = 3e-4
    weight_decay: float = 0.01
    batch_size: int = 4
    dice_weight: float = 1.0
    augment: tuple[str, ...] = ()
    val_fraction: float = 0.1
    seed: int = 0
    precision: str = "fp32"  # the encoder pass: fp32 or bf16
    # embeddings kept in memory up to this many GiB (8 MB per image and flip at 1024 px); beyond it,
    # each batch reads them back from the disk cache (same results, slower epochs)
    max_ram_gib: float = 4.0

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.steps is None or self.steps >= 1, f"steps must be >= 1, got {self.steps}"),
            (self.lr > 0 and math.isfinite(self.lr), f"lr must be > 0, got {self.lr}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (0 <= self.val_fraction < 1, f"val_fraction must be in [0, 1), got {self.val_fraction}"),
            (self.precision in ("fp32", "bf16"), f"precision must be fp32 or bf16, got {self.precision}"),
            (self.max_ram_gib >= 0, f"max_ram_gib must be >= 0, got {self.max_ram_gib}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise HeadError(msg)
        for a in self.augment:
            if a not in AUGMENTATIONS:
                raise HeadError(f"unknown augmentation {a!r}: one of {', '.join(AUGMENTATIONS)}")


@dataclass
class HeadResult:
    """What :func:`train_head` did: the head (best on validation, else the last), the history."""

    head: PromptFreeHead
    path: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    best_val_miou: float | None = None
    encoded: int = 0
    cache_hits: int = 0
    embed_seconds: float = 0.0
    train_seconds: float = 0.0
    resumed_from: int = 0


def head_loss(logits: torch.Tensor, target: torch.Tensor, dice_weight: float = 1.0) -> torch.Tensor:
    """Cross-entropy over the classes (background included) plus ``dice_weight`` x the soft Dice loss
    of the object classes, averaged over classes and images (AutoSAM's loss)."""
    ce = F.cross_entropy(logits, target.long())
    probs = logits.softmax(dim=1)[:, 1:]
    onehot = F.one_hot(target.long(), logits.shape[1]).permute(0, 3, 1, 2)[:, 1:].float()
    inter = (probs * onehot).flatten(2).sum(-1)
    denom = probs.flatten(2).sum(-1) + onehot.flatten(2).sum(-1)
    dice = 1 - (2 * inter + 1) / (denom + 1)
    return ce + dice_weight * dice.mean()


def class_ious(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> list[float | None]:
    """IoU of each object class (1..num_classes) over a set of label maps; None for a class absent
    from both."""
    out: list[float | None] = []
    for k in range(1, num_classes + 1):
        p, t = pred == k, target == k
        union = int((p | t).sum())
        out.append(int((p & t).sum()) / union if union else None)
    return out


def _targets(labels: np.ndarray, size: int) -> torch.Tensor:
    """A class map resized (nearest) to the decoder's output grid, as the model sees the image."""
    t = torch.from_numpy(np.ascontiguousarray(labels))[None, None].float()
    return F.interpolate(t, size=(size, size), mode="nearest")[0, 0].to(torch.uint8)


def _split(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    if fraction <= 0 or n < 5:
        return list(range(n)), []
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    k = max(1, round(n * fraction))
    return sorted(order[k:]), sorted(order[:k])


@dataclass
class _Item:
    """One training image (or flip): its embedding in memory, or the cache file to read it from."""

    path: Path
    target: torch.Tensor
    tensors: tuple[torch.Tensor, list[torch.Tensor]] | None

    def features(self) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return self.tensors if self.tensors is not None else EmbeddingCache.read(self.path)


def _embed_all(
    data: ClassImages,
    indices: list[int],
    augs: tuple[str, ...],
    cache: EmbeddingCache,
    grid: int,
    bar,
    max_bytes: float = float("inf"),
) -> list[_Item]:
    out: list[_Item] = []
    total = len(indices) * (1 + len(augs))
    in_ram = True
    for i in indices:
        item = data.load(i)
        for a in ("none", *augs):
            img, lab = augment(item.image, item.labels, a)
            embed, high = cache.get(img)
            if in_ram and not out:  # the first one tells how much all of them would take
                size = sum(t.numel() * t.element_size() for t in (embed, *high))
                in_ram = size * total <= max_bytes
            out.append(_Item(cache.path_for(img), _targets(lab, grid), (embed, high) if in_ram else None))
            bar.update()
    return out


def _batches(n: int, size: int, generator: torch.Generator) -> list[list[int]]:
    order = torch.randperm(n, generator=generator).tolist()
    return [order[i : i + size] for i in range(0, n, size)]


def _stack(items: list[_Item], idx, device):
    feats = [items[i].features() for i in idx]
    embed = torch.cat([e for e, _ in feats]).to(device).float()
    high = [torch.cat([h[lv] for _, h in feats]).to(device).float() for lv in range(len(feats[0][1]))]
    target = torch.stack([items[i].target for i in idx]).to(device)
    return embed, high, target


@torch.no_grad()
def _validate(
    head: PromptFreeHead, items, device, batch_size: int
) -> tuple[float | None, list[float | None]]:
    if not items:
        return None, []
    head.eval()
    preds, targets = [], []
    for s in range(0, len(items), batch_size):
        idx = list(range(s, min(s + batch_size, len(items))))
        embed, high, target = _stack(items, idx, device)
        preds.append(head(embed, high).argmax(dim=1).cpu())
        targets.append(target.cpu())
    head.train()
    ious = class_ious(torch.cat(preds), torch.cat(targets), len(head.classes))
    known = [v for v in ious if v is not None]
    return (float(np.mean(known)) if known else None), ious


def train_head(
    model,
    data: str | ClassImages,
    classes: list[str],
    out: str | os.PathLike,
    settings: HeadSettings | None = None,
    *,
    checkpoint_sha256: str | None = None,
    val_data: str | ClassImages | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> HeadResult:
    """Train a prompt-free head for ``classes`` and save it to ``out``.

    The image encoder runs once per training image and augmentation (embeddings are cached on disk
    under ``cache_dir``, default ``~/.cache/samkit/embeddings``; a second run reads them); it is never
    trained. Each epoch then runs the head over the cached embeddings with AdamW, cross-entropy + Dice.
    With validation data (``val_data``, or ``settings.val_fraction`` of the images held out when
    there are 5 or more) ``out`` is the head with the best validation mIoU; otherwise the last one.
    ``out`` + ``.last.pt`` keeps the latest state: rerunning the same command resumes from it.
    ``out`` + ``.metrics.jsonl`` gets one line per epoch.
    """
    from tqdm.auto import tqdm

    settings = settings or HeadSettings()
    out = Path(out)
    last_path = out.with_name(out.name + ".last.pt")
    metrics_path = out.with_name(out.name + ".metrics.jsonl")
    data = data if isinstance(data, ClassImages) else ClassImages(data, classes)
    val = (
        val_data if val_data is None or isinstance(val_data, ClassImages) else ClassImages(val_data, classes)
    )
    if list(data.classes) != list(classes):
        raise HeadError(f"the data's classes {data.classes} are not {classes}")
    device = next(model.parameters()).device
    out.parent.mkdir(parents=True, exist_ok=True)
    for p in model.parameters():
        p.requires_grad_(False)
    grid = model.cfg.image_size // 4
    cache = EmbeddingCache(cache_dir or default_cache_dir(), model, checkpoint_sha256)

    train_idx, val_idx = _split(len(data), settings.val_fraction if val is None else 0.0, settings.seed)
    t0 = time.perf_counter()
    total = len(train_idx) * (1 + len(settings.augment)) + (len(val) if val is not None else len(val_idx))
    with tqdm(total=total, desc="encode images", unit="img", disable=not progress, dynamic_ncols=True) as bar:
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=settings.precision == "bf16")
        with autocast:
            cap = settings.max_ram_gib * 2**30
            train_items = _embed_all(data, train_idx, settings.augment, cache, grid, bar, cap)
            if val is not None:
                val_items = _embed_all(val, list(range(len(val))), (), cache, grid, bar, cap)
            else:
                val_items = _embed_all(data, val_idx, (), cache, grid, bar, cap)
    embed_seconds = time.perf_counter() - t0

    torch.manual_seed(settings.seed)
    head = PromptFreeHead.from_model(model, classes, settings.kind, checkpoint_sha256).train()
    opt = torch.optim.AdamW(head.trainable_parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    per_epoch = math.ceil(len(train_items) / settings.batch_size)
    total_steps = settings.steps or settings.epochs * per_epoch
    epochs = math.ceil(total_steps / per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s, total_steps) / total_steps))
    )
    description = {
        **{k: v for k, v in asdict(settings).items() if k != "max_ram_gib"},  # where, not what
        "augment": list(settings.augment),
        "classes": list(classes),
        "data": data.spec,
        "images": len(train_items),
        "variant": model.cfg.name,
        "checkpoint_sha256": checkpoint_sha256,
    }
    history: list[dict[str, Any]] = []
    best: float | None = None
    start_epoch = 0
    if last_path.is_file():
        state = torch.load(last_path, map_location="cpu", weights_only=False)
        if state.get("description") != description:
            raise HeadError(
                f"{last_path} belongs to a run with other settings or data; use another --out or delete it"
            )
        head.load_state_dict(state["head"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        history, best, start_epoch = state["history"], state["best"], state["epoch"]
    if start_epoch == 0:
        metrics_path.unlink(missing_ok=True)  # a fresh run starts a fresh log
    gen = torch.Generator().manual_seed(settings.seed)
    for _ in range(start_epoch):  # the same shuffles as an uninterrupted run
        _batches(len(train_items), settings.batch_size, gen)

    t1 = time.perf_counter()
    step = start_epoch * per_epoch
    bar = tqdm(
        total=epochs,
        initial=start_epoch,
        desc="train head",
        unit="epoch",
        disable=not progress,
        dynamic_ncols=True,
    )
    try:
        for epoch in range(start_epoch, epochs):
            losses = []
            for idx in _batches(len(train_items), settings.batch_size, gen):
                if step >= total_steps:
                    break
                embed, high, target = _stack(train_items, idx, device)
                loss = head_loss(head(embed, high), target, settings.dice_weight)
                if not torch.isfinite(loss):
                    raise HeadError(f"the loss became {loss.item()} at step {step}; lower --lr")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                losses.append(float(loss.detach()))
                step += 1
            val_miou, ious = _validate(head, val_items, device, settings.batch_size)
            row = {"epoch": epoch + 1, "step": step, "loss": float(np.mean(losses)) if losses else None}
            if val_miou is not None:
                row["val_miou"] = val_miou
                row["val_iou"] = {c: v for c, v in zip(classes, ious)}
            history.append(row)
            with open(metrics_path, "a") as f:
                f.write(json.dumps(row) + "\n")
            improved = val_miou is not None and (best is None or val_miou > best)
            if improved:
                best = val_miou
            if improved or val_miou is None:
                head.save(out, extra={"epoch": epoch + 1, "val_miou": val_miou, **description})
            state = {
                "description": description,
                "head": head.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "history": history,
                "best": best,
                "epoch": epoch + 1,
            }
            atomic_write(last_path, lambda tmp, s=state: torch.save(s, tmp))
            bar.set_postfix(loss=row["loss"], val_miou=val_miou)
            bar.update()
    finally:
        bar.close()
    best_head = PromptFreeHead.load(out, device=device) if out.is_file() else head
    return HeadResult(
        head=best_head,
        path=out,
        history=history,
        best_val_miou=best,
        encoded=cache.encoded,
        cache_hits=cache.hits,
        embed_seconds=embed_seconds,
        train_seconds=time.perf_counter() - t1,
        resumed_from=start_epoch,
    )
