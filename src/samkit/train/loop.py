"""``fit``: the training loop. One process or many (``torchrun``: gradients averaged over the
processes, each taking its own slice of every global batch), resumable from ``OUT/last.pt``, with
metrics in ``OUT/metrics.jsonl`` (and TensorBoard when installed) and the weights in the official
layout in ``OUT/checkpoint.pt``."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from ..modeling import SAM2Model
from ..policy import cpu_features
from .batch import collate
from .data import MixedDataset, TrainDataset
from .forward import train_forward
from .lora import add_lora, merged_state_dict
from .loss import TERMS, LossWeights, MultiStepLoss
from .optim import (
    OptimSettings,
    complete_decoder_grads,
    cosine_lr,
    freeze,
    make_optimizer,
    set_lr,
    set_regularization,
)
from .prompting import PromptSimulation

logger = logging.getLogger("samkit.train")

LAST = "last.pt"
FINAL = "checkpoint.pt"
METRICS = "metrics.jsonl"
SKIPPED = "skipped.txt"


@dataclass(frozen=True)
class TrainSettings:
    """Everything that shapes a run. Defaults: Meta's SAM 2.1 fine-tuning, except the run length.

    - ``epochs`` or ``steps`` (optimizer steps; when both are given, ``steps`` wins);
    - ``batch_size``: samples per process and step (per dataset in a mix: see :func:`fit`);
    - ``precision``: "fp32", "bf16" (autocast, as Meta trains) or "auto" (bf16 on a GPU that has it
      and on CPUs with native bf16, else fp32);
    - ``freeze``: parts not trained ("image_encoder", "prompt_encoder", "mask_decoder", "memory");
    - ``lora_rank``: > 0 trains only LoRA updates of the attention projections (merged on save);
    - ``activation_checkpointing``: recompute the trunk's blocks in the backward pass (less memory);
    - ``save_every``: steps between resumable checkpoints (and at every epoch's end);
    - ``workers``: DataLoader processes (0: load in the training process).
    """

    epochs: int | None = 1
    steps: int | None = None
    batch_size: int = 1
    optim: OptimSettings = field(default_factory=OptimSettings)
    loss: LossWeights = field(default_factory=LossWeights)
    prompts: PromptSimulation = field(default_factory=PromptSimulation)
    precision: str = "auto"
    seed: int = 123
    freeze: tuple[str, ...] = ()
    lora_rank: int = 0
    dropout: float = 0.1
    drop_path: float = 0.1
    activation_checkpointing: bool = False
    save_every: int = 100
    log_every: int = 1
    workers: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if self.steps is None and self.epochs is None:
            raise ValueError("give epochs or steps")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', got {self.precision!r}")
        if self.save_every < 1:
            raise ValueError(f"save_every must be >= 1, got {self.save_every}")

    def fingerprint(self) -> str:
        """What must not change between a run and its resumption (the run length may)."""
        d = dataclasses.asdict(self)
        for k in ("epochs", "steps", "save_every", "log_every", "workers", "progress"):
            d.pop(k)
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class FitResult:
    """What :func:`fit` did: the steps taken in total, the last logged metrics and the output files."""

    steps: int
    epochs_done: int
    metrics: dict[str, float]
    checkpoint: Path
    resumed_from: int = 0
    validation: list[dict[str, float]] = field(default_factory=list)


# --- distributed ------------------------------------------------------------------------------


def distributed() -> tuple[int, int]:
    """(rank, world size): from torchrun's environment, initializing the process group on first use
    (NCCL for CUDA, gloo otherwise); (0, 1) outside torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return dist.get_rank(), dist.get_world_size()


def sync_gradients(params: list[torch.nn.Parameter], world: int) -> None:
    """What DDP (with unused parameters allowed) does to gradients: a parameter that got a gradient
    on some process gets the average over all processes (zero where it was unused); one unused
    everywhere keeps no gradient, so the optimizer leaves it alone. One flat buffer per dtype."""
    if world <= 1:
        return
    used = torch.tensor([p.grad is not None for p in params], dtype=torch.float32)
    dist.all_reduce(used)
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for p, u in zip(params, used.tolist()):
        if u == 0:
            continue
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        by_dtype.setdefault(p.grad.dtype, []).append(p.grad)
    for grads in by_dtype.values():
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= world
        offset = 0
        for g in grads:
            n = g.numel()
            g.copy_(flat[offset : offset + n].view_as(g))
            offset += n


def _all_true(flag: bool, world: int, device: torch.device) -> bool:
    if world <= 1:
        return flag
    t = torch.tensor([0.0 if flag else 1.0], device=device)
    dist.all_reduce(t)
    return t.item() == 0


# --- model preparation -------------------------------------------------------------------------


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        f = cpu_features()
        return "bf16" if f.avx512_bf16 or f.amx else "fp32"
    return "fp32"


def enable_activation_checkpointing(model: SAM2Model) -> None:
    """Recompute each trunk block's activations in the backward pass instead of keeping them."""
    from torch.utils.checkpoint import checkpoint

    for block in model.image_encoder.trunk.blocks:
        if getattr(block, "_samkit_checkpointed", False):
            continue
        block.forward = functools.partial(checkpoint, block.forward, use_reentrant=False)
        block._samkit_checkpointed = True


def prepare_model(model: SAM2Model, s: TrainSettings) -> SAM2Model:
    """Put a loaded model in training shape: float32 weights, regularization, frozen parts or LoRA,
    activation checkpointing, train mode."""
    if model.precision != "fp32":
        raise ValueError(
            "train a float32 model (load_model(..., precision='fp32')); use --precision bf16 for autocast"
        )
    set_regularization(model, s.dropout, s.drop_path)
    if s.lora_rank:
        add_lora(model, s.lora_rank)
    if s.freeze:
        freeze(model, s.freeze)
    if s.activation_checkpointing:
        enable_activation_checkpointing(model)
    return model.train()


def finish_model(model: SAM2Model) -> SAM2Model:
    """After training: LoRA updates folded into the weights, dropout and drop path off, eval mode,
    every parameter trainable again -- the model as :func:`samkit.load_model` would give it, ready for
    the predictors."""
    from torch.nn.utils import parametrize

    for mod in list(model.modules()):
        if parametrize.is_parametrized(mod, "weight"):
            parametrize.remove_parametrizations(mod, "weight", leave_parametrized=True)
    set_regularization(model, 0.0, 0.0)
    for p in model.parameters():
        p.requires_grad_(True)
    return model.eval()


def _run_description(s: TrainSettings, pairs, model: SAM2Model, world: int) -> dict[str, str]:
    """What a resumed run must share with the run that wrote ``last.pt``: the settings (less the run
    length), the data (kind, size, sampling, augmentation), the model's resolution, the processes."""
    data = []
    for d, b in pairs:
        aug = getattr(d, "augment", None)
        data.append(
            [
                type(d).__name__,
                len(d),
                b,
                getattr(d, "num_frames", 1),
                getattr(d, "max_objects", None),
                dataclasses.asdict(aug) if dataclasses.is_dataclass(aug) else None,
            ]
        )
    return {
        "settings": s.fingerprint(),
        "data": hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16],
        "image_size": str(model.image_size),
        "processes": str(world),
    }


def official_state_dict(model: SAM2Model) -> dict[str, torch.Tensor]:
    """Weights under the official keys (LoRA folded in), on the CPU."""
    return {k: v.detach().cpu().clone() for k, v in merged_state_dict(model).items()}


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


# --- validation --------------------------------------------------------------------------------


@torch.no_grad()
def validate(
    model: SAM2Model, dataset: TrainDataset, precision: str = "fp32", rank: int = 0, world: int = 1
) -> dict[str, float]:
    """Held-out quality in eval mode, without randomness: images get one centre click
    (``val_miou`` = mean IoU over objects); videos their first frame's masks (``val_j`` = mean IoU
    over the objects and the frames after the first, the J of J&F). In a distributed run every
    process takes its share of the items and all get the same result."""
    was_training = model.training
    model.eval()
    sim = PromptSimulation.evaluation()
    rng = np.random.default_rng(0)
    ious: list[float] = []
    try:
        for i in range(rank, len(dataset), world):
            sample = dataset[i]
            batch = collate([sample]).to(model.device)
            with _autocast(model.device, precision):
                results, _ = train_forward(model, batch, sim, rng)
            first = 0 if batch.num_frames == 1 else 1
            for t in range(first, batch.num_frames):
                pred = results[t].pred_masks_high_res[:, 0] > 0
                gt = batch.masks[t]
                inter = (pred & gt).flatten(1).sum(1).float()
                union = (pred | gt).flatten(1).sum(1).float()
                # an object absent from both is a perfect answer (as J counts it)
                ious += torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union)).tolist()
    finally:
        model.train(was_training)
    key = "val_miou" if dataset.num_frames == 1 else "val_j"
    total = torch.tensor([float(sum(ious)), float(len(ious))], dtype=torch.float64)
    if world > 1:
        dist.all_reduce(total)
    return {key: total[0].item() / total[1].item() if total[1] > 0 else float("nan")}


def _autocast(device: torch.device, precision: str):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


# --- the loop ---------------------------------------------------------------------------------


def _rng_state(rng: np.random.Generator, device: torch.device) -> dict:
    state = {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(rng: np.random.Generator, state: dict, device: torch.device) -> None:
    rng.bit_generator.state = state["numpy"]
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


class _Metrics:
    def __init__(self, out: Path, enabled: bool) -> None:
        self.enabled = enabled
        self.path = out / METRICS
        self.tb = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out / "tensorboard"))
            except Exception:  # tensorboard not installed: the jsonl file is the record
                self.tb = None

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                    self.tb.add_scalar(k, v, record["step"])

    def truncate_after(self, step: int) -> None:
        """On resumption, forget records of steps after the checkpoint (they will be redone)."""
        if not self.enabled or not self.path.exists():
            return
        keep = []
        for line in self.path.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    keep.append(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash
        self.path.write_text("".join(k + "\n" for k in keep))

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def fit(
    model: SAM2Model,
    data: TrainDataset | list[tuple[TrainDataset, int]],
    settings: TrainSettings | None = None,
    out: str | os.PathLike = "runs/train",
    val: TrainDataset | None = None,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> FitResult:
    """Fine-tune ``model`` on ``data`` and write ``OUT/checkpoint.pt`` (official layout).

    ``data``: a dataset (batches of ``settings.batch_size``) or ``[(dataset, batch_size), ...]`` to
    mix images and videos (each batch from one dataset). ``val``: evaluated after every epoch (see
    :func:`validate`). Rerunning with the same ``out`` resumes from ``OUT/last.pt``: the same
    settings (except the run length) are required, and the run ends with the weights an
    uninterrupted one would have. ``on_step(step, metrics)`` is called after every optimizer step.
    Under ``torchrun`` every process runs this with the same arguments; rank 0 writes the files.
    """
    s = settings or TrainSettings()
    out = Path(out)
    rank, world = distributed()
    device = model.device
    precision = resolve_precision(s.precision, device)
    is_main = rank == 0
    if is_main:
        out.mkdir(parents=True, exist_ok=True)

    pairs = data if isinstance(data, list) else [(data, s.batch_size)]
    for d, _ in [*pairs, *([(val, 1)] if val is not None else [])]:
        size = getattr(getattr(d, "augment", None), "size", model.image_size)
        if size != model.image_size:
            raise ValueError(
                f"{type(d).__name__} makes {size} px samples but the model takes {model.image_size} px: "
                f"give the dataset AugmentSettings(size={model.image_size}) or the model image_size={size}"
            )
    for d, _ in pairs:
        if getattr(d, "skip_bad", False):
            d.skip_log = out / SKIPPED
    mixed = MixedDataset(pairs, seed=s.seed, rank=rank, world_size=world)
    steps_per_epoch = len(mixed)
    if steps_per_epoch == 0:
        raise ValueError("the dataset gives no batch: fewer items than batch_size x processes")
    total = s.steps if s.steps is not None else s.epochs * steps_per_epoch

    torch.manual_seed(s.seed + rank)
    prepare_model(model, s)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(model, s.optim)
    rng = np.random.default_rng(s.seed)  # prompt decisions: the same on every process
    loss_fn = MultiStepLoss(s.loss)

    step, start_epoch, skip = 0, 0, 0
    last = out / LAST
    run = _run_description(s, pairs, model, world)
    if last.exists():
        state = torch.load(last, map_location="cpu", weights_only=True)
        before = state.get("run", {})
        changed = sorted(k for k in run.keys() | before.keys() if run.get(k) != before.get(k))
        if changed:
            raise ValueError(
                f"{last} was written by a run with other settings ({', '.join(changed)} differ); rerun "
                "with the same ones to resume, or use another output folder (or delete it) to start over"
            )
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, start_epoch, skip = state["step"], state["epoch"], state["batch_in_epoch"]
        _set_rng_state(rng, state["rng"][rank] if isinstance(state["rng"], list) else state["rng"], device)
        logger.info("resuming %s at step %d (epoch %d, batch %d)", out, step, start_epoch, skip)
    resumed_from = step
    if step >= total and (out / FINAL).exists():
        logger.info("%s: already trained %d steps", out, step)
        finish_model(model)
        return FitResult(step, step // steps_per_epoch, {}, out / FINAL, resumed_from=step)
    metrics_log = _Metrics(out, is_main)
    metrics_log.truncate_after(step)
    if world > 1:
        # every process starts from rank 0's weights (they are equal already when loaded alike)
        for p in model.state_dict().values():
            dist.broadcast(p, 0)

    bar = None
    if s.progress and is_main:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=step, desc="train", unit="step", dynamic_ncols=True)

    def save(epoch: int, batch_in_epoch: int) -> None:
        rng_states = _rng_state(rng, device)
        if world > 1:
            gathered: list[Any] = [None] * world
            dist.all_gather_object(gathered, rng_states)
            rng_states = gathered
        if is_main:
            _atomic_save(
                {
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "step": step,
                    "epoch": epoch,
                    "batch_in_epoch": batch_in_epoch,
                    "rng": rng_states,
                    "run": run,
                    "settings": dataclasses.asdict(s),
                },
                last,
            )

    record: dict[str, float] = {}
    validation: list[dict[str, float]] = []
    epoch = start_epoch
    t_last = time.perf_counter()
    try:
        while step < total:
            mixed.set_epoch(epoch)
            order = list(range(skip, len(mixed)))
            # its own generator: a loader draws a seed from the global one, which would shift the
            # dropout of a resumed run against an uninterrupted one
            loader = torch.utils.data.DataLoader(
                mixed,
                batch_size=None,
                sampler=order,
                num_workers=s.workers,
                generator=torch.Generator().manual_seed(s.seed * 1000 + epoch),
            )
            for i, batch in enumerate(loader, start=skip):
                batch = batch.to(device, non_blocking=True)
                set_lr(opt, step / total, s.optim)
                opt.zero_grad(set_to_none=True)
                with _autocast(device, precision):
                    results, _ = train_forward(model, batch, s.prompts, rng)
                    losses = loss_fn(results, batch.masks)
                # every process stops together on a non-finite loss (none waits in an all-reduce)
                if not _all_true(bool(torch.isfinite(losses["total"])), world, device):
                    raise FloatingPointError(
                        f"the loss is not finite at step {step + 1} (batch {batch.names} on process {rank}: "
                        f"{float(losses['total'])}); try a lower --lr"
                    )
                if losses["total"].requires_grad:
                    losses["total"].backward()
                # (else every frame of the clip was a mask prompt, a clip as short as its conditioning
                # frames: nothing was predicted and no parameter gets a gradient)
                complete_decoder_grads(model)
                sync_gradients(trainable, world)
                with_grad = [p for p in trainable if p.grad is not None]
                grad_norm = (
                    torch.nn.utils.clip_grad_norm_(with_grad, s.optim.clip_grad_norm) if with_grad else 0.0
                )
                opt.step()
                step += 1
                now = time.perf_counter()
                record = {
                    "step": step,
                    "epoch": epoch,
                    "loss": float(losses["total"].detach()),
                    **{k: float(losses[k].detach()) for k in TERMS},
                    "grad_norm": float(grad_norm),
                    "lr": cosine_lr(s.optim.lr, (step - 1) / total, s.optim.final_lr_fraction),
                    "step_s": now - t_last,
                }
                t_last = now
                if step % s.log_every == 0 or step == total:
                    metrics_log.write(record)
                if bar is not None:
                    bar.set_postfix(loss=f"{record['loss']:.3f}", refresh=False)
                    bar.update(1)
                end_of_epoch = i + 1 == len(mixed)
                if step % s.save_every == 0 or step == total or end_of_epoch:
                    if end_of_epoch:
                        save(epoch + 1, 0)
                    else:
                        save(epoch, i + 1)
                if on_step is not None:
                    on_step(step, record)
                if step >= total:
                    break
            else:
                # a whole epoch done
                if val is not None:
                    v = validate(model, val, precision, rank, world)
                    v.update(step=step, epoch=epoch)
                    validation.append(v)
                    metrics_log.write(v)
                    model.train()
                epoch += 1
                skip = 0
                continue
            break
    finally:
        if bar is not None:
            bar.close()
        metrics_log.close()
    if val is not None and (not validation or validation[-1]["step"] != step):
        v = validate(model, val, precision, rank, world)
        v.update(step=step, epoch=epoch)
        validation.append(v)
        metrics_log.write(v)
    final = out / FINAL
    if is_main:
        _atomic_save({"model": official_state_dict(model)}, final)
    if world > 1:
        dist.barrier()
    finish_model(model)
    return FitResult(
        steps=step,
        epochs_done=step // steps_per_epoch,
        metrics=record,
        checkpoint=final,
        resumed_from=resumed_from,
        validation=validation,
    )
