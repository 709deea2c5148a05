"""Video tracking as small functions over a :class:`~samkit.modeling.SAM2Model`.

One step of tracking a frame, for a batch of B objects:

1. :func:`frame_features` — backbone features of the frame (shared by all objects).
2. :func:`memory_plan` + :func:`assemble_memory` — which past frames and object pointers each object
   attends to, stacked into one (B, M, mem_dim) memory; objects with the same plan share a batch.
3. :func:`condition_on_memory` — memory attention over the current frame's features.
4. :func:`sam_heads` (or :func:`mask_as_output` for mask prompts) — masks, scores, object pointer.
5. :func:`encode_memory` — the memory encoder turns the frame + its mask into the next memory.

Tensors are batch-first (B, C, H, W) / (B, N, C). The arithmetic follows the reference
``SAM2Base`` operation for operation, so logits agree with it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..modeling import SAM2Model

# logit given to masks of objects judged absent (and to objects missing from a frame)
NO_OBJ_SCORE = -1024.0


@dataclass
class FrameFeatures:
    """Backbone output of one frame (batch 1).

    high_res: [(1, C/8, 4h, 4w), (1, C/4, 2h, 2w)] already projected for the decoder;
    top: (1, C, h, w) lowest-resolution features; top_pos: (1, C, h, w) their sine encoding.
    """

    high_res: list[torch.Tensor]
    top: torch.Tensor
    top_pos: torch.Tensor

    def expand(self, b: int) -> FrameFeatures:
        return FrameFeatures(
            [f.expand(b, -1, -1, -1) for f in self.high_res],
            self.top.expand(b, -1, -1, -1),
            self.top_pos.expand(b, -1, -1, -1),
        )

    def to(self, device) -> FrameFeatures:
        return FrameFeatures(
            [f.to(device) for f in self.high_res], self.top.to(device), self.top_pos.to(device)
        )

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.high_res, self.top, self.top_pos))


@dataclass
class FrameOutput:
    """What is kept of one frame for a batch of objects (B = 1 in per-object storage).

    pred_masks: (B, 1, 4h, 4w) low-res logits; obj_ptr: (B, C); object_score_logits: (B, 1);
    maskmem_features: (B, mem_dim, h, w) or None (not encoded yet, or trimmed);
    maskmem_pos_enc: (1, mem_dim, h, w) (the same for every frame) or None.
    """

    pred_masks: torch.Tensor | None
    obj_ptr: torch.Tensor
    object_score_logits: torch.Tensor
    maskmem_features: torch.Tensor | None = None
    maskmem_pos_enc: torch.Tensor | None = None

    def select(self, i: int) -> FrameOutput:
        """Object i of a batched output, as a batch of one."""
        return FrameOutput(
            pred_masks=None if self.pred_masks is None else self.pred_masks[i : i + 1],
            obj_ptr=self.obj_ptr[i : i + 1],
            object_score_logits=self.object_score_logits[i : i + 1],
            maskmem_features=None if self.maskmem_features is None else self.maskmem_features[i : i + 1],
            maskmem_pos_enc=self.maskmem_pos_enc,
        )


# --- 1. features ----------------------------------------------------------------------------


def frame_features(model: SAM2Model, image: torch.Tensor) -> FrameFeatures:
    """image: (1, 3, S, S) normalized -> :class:`FrameFeatures`."""
    out = model.forward_image(image)
    return FrameFeatures(high_res=out.features[:-1], top=out.features[-1], top_pos=out.pos[-1])


# --- 2. memory ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryPlan:
    """The memory one object attends to at one frame.

    spatial: (t_pos, frame_idx, is_cond) of each memory frame in attention order;
    pointers: (temporal position, frame_idx, is_cond) of each object pointer.
    Objects whose plans are equal can be stacked into one batch.
    """

    spatial: tuple[tuple[int, int, bool], ...]
    pointers: tuple[tuple[int, int, bool], ...]


def select_closest_cond_frames(
    frame_idx: int, cond_frames: list[int], max_num: int
) -> tuple[list[int], list[int]]:
    """Up to ``max_num`` conditioning frames closest in time to ``frame_idx`` (-1: all): the closest
    before, the closest at/after, then the nearest others. Returns (selected, unselected) in the
    order the reference attends to them."""
    if max_num == -1 or len(cond_frames) <= max_num:
        return list(cond_frames), []
    if max_num < 2:
        raise ValueError("max_cond_frames_in_attn must allow at least 2 conditioning frames")
    selected = []
    before = max((t for t in cond_frames if t < frame_idx), default=None)
    if before is not None:
        selected.append(before)
    after = min((t for t in cond_frames if t >= frame_idx), default=None)
    if after is not None:
        selected.append(after)
    rest = sorted((t for t in cond_frames if t not in selected), key=lambda t: abs(t - frame_idx))
    selected += rest[: max_num - len(selected)]
    return selected, [t for t in cond_frames if t not in selected]


def memory_plan(
    model: SAM2Model,
    frame_idx: int,
    cond: dict[int, FrameOutput],
    non_cond: dict[int, FrameOutput],
    num_frames: int,
    reverse: bool,
    training: bool = False,
) -> MemoryPlan:
    """Which stored outputs one object's memory holds when tracking ``frame_idx``.

    Conditioning frames come first (temporal position 0), then the last ``num_maskmem - 1``
    tracked frames (stride ``memory_temporal_stride_for_eval``), then object pointers of past
    conditioning frames and of up to ``max_obj_ptrs_in_encoder - 1`` previous frames.
    """
    cfg = model.cfg
    selected, unselected = select_closest_cond_frames(frame_idx, list(cond), cfg.max_cond_frames_in_attn)
    unselected_set = set(unselected)
    spatial: list[tuple[int, int, bool]] = [(0, t, True) for t in selected]
    # training attends to consecutive frames and to the pointers of every conditioning frame
    stride = 1 if training else cfg.memory_temporal_stride_for_eval
    for t_pos in range(1, cfg.num_maskmem):
        t_rel = cfg.num_maskmem - t_pos  # frames before the current one
        if t_rel == 1:
            prev = frame_idx + 1 if reverse else frame_idx - 1
        elif not reverse:
            prev = ((frame_idx - 2) // stride) * stride - (t_rel - 2) * stride
        else:
            prev = -(-(frame_idx + 2) // stride) * stride + (t_rel - 2) * stride
        if prev in non_cond:
            spatial.append((t_pos, prev, False))
        elif prev in unselected_set:
            # an unselected conditioning frame among the recent ones is attended like a tracked one
            spatial.append((t_pos, prev, True))
    # a memory frame whose features were trimmed (or never encoded) is skipped, like a missing one
    spatial = [s for s in spatial if _lookup(s[1], s[2], cond, non_cond).maskmem_features is not None]

    pointers: list[tuple[int, int, bool]] = []
    if cfg.use_obj_ptrs_in_encoder:
        max_ptrs = min(num_frames, cfg.max_obj_ptrs_in_encoder)
        sign = -1 if reverse else 1
        for t in selected:
            if (
                not training
                and cfg.only_obj_ptrs_in_the_past_for_eval
                and not (t >= frame_idx if reverse else t <= frame_idx)
            ):
                continue
            pos = (frame_idx - t) * sign if cfg.use_signed_tpos_enc_to_obj_ptrs else abs(frame_idx - t)
            pointers.append((pos, t, True))
        for t_diff in range(1, max_ptrs):
            t = frame_idx + t_diff if reverse else frame_idx - t_diff
            if t < 0 or t >= num_frames:
                break
            if t in non_cond:
                pointers.append((t_diff, t, False))
            elif t in unselected_set:
                pointers.append((t_diff, t, True))
    return MemoryPlan(tuple(spatial), tuple(pointers))


def _lookup(t: int, is_cond: bool, cond: dict, non_cond: dict) -> FrameOutput:
    return cond[t] if is_cond else non_cond[t]


def sine_pe_1d(positions: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """(N,) positions -> (N, dim): [sin | cos] halves (not interleaved), as for pointer positions."""
    half = dim // 2
    dim_t = torch.arange(half, dtype=torch.float32, device=positions.device)
    dim_t = temperature ** (2 * (dim_t // 2) / half)
    angles = positions.unsqueeze(-1) / dim_t
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def assemble_memory(
    model: SAM2Model,
    plan: MemoryPlan,
    stores: list[tuple[dict[int, FrameOutput], dict[int, FrameOutput]]],
    num_frames: int,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Stack the memory of B objects sharing ``plan``; ``stores[b]`` = (cond, non_cond) of object b.

    Returns memory (B, M, mem_dim), its position encoding (B, M, mem_dim) and the number of
    object-pointer tokens at the end of it.
    """
    cfg = model.cfg
    mems, poss = [], []
    for t_pos, t, is_cond in plan.spatial:
        outs = [_lookup(t, is_cond, cond, non_cond) for cond, non_cond in stores]
        feats = torch.cat([o.maskmem_features for o in outs]).to(device, non_blocking=True)
        b = feats.shape[0]  # objects: one per store, or a store holding a batch (training)
        mems.append(feats.flatten(2).transpose(1, 2))
        pos = outs[0].maskmem_pos_enc[:1].to(device).flatten(2).transpose(1, 2)
        pos = pos + model.maskmem_tpos_enc[cfg.num_maskmem - t_pos - 1]
        poss.append(pos.expand(b, -1, -1))

    num_ptr_tokens = 0
    if plan.pointers:
        ptrs = torch.stack(
            [
                torch.cat([_lookup(t, is_cond, cond, non_cond).obj_ptr for cond, non_cond in stores]).to(
                    device
                )
                for _, t, is_cond in plan.pointers
            ],
            dim=1,
        )  # (B, P, C)
        positions = torch.tensor([p for p, _, _ in plan.pointers], device=device)
        ptrs, obj_pos = pointer_tokens(model, ptrs, positions / pointer_scale(cfg, num_frames))
        mems.append(ptrs)
        poss.append(obj_pos)
        num_ptr_tokens = ptrs.shape[1]
    return torch.cat(mems, dim=1), torch.cat(poss, dim=1), num_ptr_tokens


def pointer_scale(cfg, num_frames: int) -> int:
    """What an object pointer's temporal distance is divided by before its sine encoding: the pointer
    window, or the clip's length where that is shorter."""
    return max(min(num_frames, cfg.max_obj_ptrs_in_encoder) - 1, 1)


def pointer_tokens(
    model: SAM2Model, ptrs: torch.Tensor, positions: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Object pointers (B, P, C) as memory tokens, with their position encoding: ``positions`` (P,) or
    (B, P) are the pointers' temporal distances over :func:`pointer_scale`. A pointer becomes C /
    mem_dim tokens of width mem_dim. Returns tokens and encoding, (B, P * C / mem_dim, mem_dim)."""
    cfg = model.cfg
    c, mem_dim = model.hidden_dim, model.mem_dim
    b, n = ptrs.shape[:2]
    if cfg.add_tpos_enc_to_obj_ptrs:
        tpos_dim = c if cfg.proj_tpos_enc_in_obj_ptrs else mem_dim
        obj_pos = model.obj_ptr_tpos_proj(sine_pe_1d(positions.flatten(), tpos_dim))
        obj_pos = obj_pos.reshape(*positions.shape, mem_dim).expand(b, n, mem_dim)
    else:
        obj_pos = ptrs.new_zeros(b, n, mem_dim)
    if mem_dim < c:
        ptrs = ptrs.reshape(b, n, c // mem_dim, mem_dim).flatten(1, 2)
        obj_pos = obj_pos.repeat_interleave(c // mem_dim, dim=1)
    return ptrs, obj_pos


def bank_size(model: SAM2Model, cond_slots: int) -> tuple[int, int, int]:
    """A fixed-size memory bank with ``cond_slots`` slots for conditioning frames: (conditioning-frame
    slots, recent-frame slots, object-pointer slots)."""
    cfg = model.cfg
    recent = max(cfg.num_maskmem - 1, 0)
    pointers = (cond_slots + cfg.max_obj_ptrs_in_encoder - 1) if cfg.use_obj_ptrs_in_encoder else 0
    return cond_slots, recent, pointers


def static_slots(model: SAM2Model, plans: list[MemoryPlan]) -> tuple[int, int, int]:
    """The fixed memory layout for these plans (:func:`bank_size`). Only the conditioning-frame slots
    depend on the session (its conditioning frames, rounded up to a power of two); none depends on the
    frame index."""
    most = max((sum(1 for s in p.spatial if s[0] == 0) for p in plans), default=1)
    return bank_size(model, 1 << max(0, most - 1).bit_length())


def bank_layout(plan: MemoryPlan, cond_slots: int) -> Iterator[tuple[int, int, int, bool]]:
    """(slot, t_pos, frame_idx, is_cond) of each memory frame of ``plan`` in a fixed-size bank: the
    conditioning frames in the first ``cond_slots`` slots in order, a recent frame at
    ``cond_slots + t_pos - 1``."""
    k = 0  # next conditioning slot
    for t_pos, t, is_cond in plan.spatial:
        if t_pos == 0:
            slot, k = k, k + 1
        else:
            slot = cond_slots + t_pos - 1
        yield slot, t_pos, t, is_cond


def assemble_memory_static(
    model: SAM2Model,
    plans: list[MemoryPlan],
    stores: list[tuple[dict[int, FrameOutput], dict[int, FrameOutput]]],
    num_frames: int,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, int, torch.Tensor]:
    """The memory of B objects (object b: ``plans[b]`` over ``stores[b]``, plans may differ) in a
    fixed-size bank: slots for conditioning frames, for the ``num_maskmem - 1`` recent frames and for
    the object pointers (:func:`static_slots`), with a validity mask instead of a length that grows
    during the first frames. Attention over the valid entries equals :func:`assemble_memory`'s (keys
    are attended regardless of their order: the pointers are not rotated, and a memory frame's
    rotation depends only on the position within its frame).

    Returns memory (B, M, mem_dim), position encoding (B, M, mem_dim), the number of pointer tokens
    at the end, and the mask (B, M) of valid entries.
    """
    cfg = model.cfg
    c, mem_dim = model.hidden_dim, model.mem_dim
    cond_slots, recent_slots, ptr_slots = static_slots(model, plans)
    b = len(plans)
    first = next(_lookup(t, ic, *stores[i]) for i, p in enumerate(plans) for _, t, ic in p.spatial)
    hw = first.maskmem_features.shape[-2] * first.maskmem_features.shape[-1]
    per_ptr = c // mem_dim if mem_dim < c else 1
    n_spatial = (cond_slots + recent_slots) * hw
    n_ptr = ptr_slots * per_ptr
    dtype = first.maskmem_features.dtype
    mem = torch.zeros(b, n_spatial + n_ptr, mem_dim, device=device, dtype=dtype)
    pos = torch.zeros(b, n_spatial + n_ptr, mem_dim, device=device)
    valid = torch.zeros(b, n_spatial + n_ptr, dtype=torch.bool, device=device)
    enc = first.maskmem_pos_enc[:1].to(device).flatten(2).transpose(1, 2)[0]  # (hw, mem_dim), every frame's
    for i, (plan, (cond, non_cond)) in enumerate(zip(plans, stores)):
        for slot, t_pos, t, is_cond in bank_layout(plan, cond_slots):
            sl = slice(slot * hw, (slot + 1) * hw)
            mem[i, sl] = _lookup(t, is_cond, cond, non_cond).maskmem_features[0].flatten(1).t()
            pos[i, sl] = enc + model.maskmem_tpos_enc[cfg.num_maskmem - t_pos - 1].reshape(1, mem_dim)
            valid[i, sl] = True
    if ptr_slots:
        ptrs = torch.zeros(b, ptr_slots, c, device=device)
        positions = torch.zeros(b, ptr_slots, device=device)
        for i, (plan, (cond, non_cond)) in enumerate(zip(plans, stores)):
            for j, (p, t, is_cond) in enumerate(plan.pointers):
                ptrs[i, j] = _lookup(t, is_cond, cond, non_cond).obj_ptr[0]
                positions[i, j] = p
            valid[i, n_spatial : n_spatial + len(plan.pointers) * per_ptr] = True
        ptrs, obj_pos = pointer_tokens(model, ptrs, positions / pointer_scale(cfg, num_frames))
        mem[:, n_spatial:] = ptrs.to(dtype)
        pos[:, n_spatial:] = obj_pos
    return mem, pos, n_ptr, valid


# --- 3. memory attention --------------------------------------------------------------------


def condition_on_memory(
    model: SAM2Model,
    feats: FrameFeatures,
    is_init_cond_frame: bool,
    memory: tuple | None,
) -> torch.Tensor:
    """Current-frame features (B, C, h, w) fused with the memory: :func:`assemble_memory`'s (memory,
    position encoding, pointer tokens) or :func:`assemble_memory_static`'s, which adds the mask."""
    top = feats.top
    b, c, h, w = top.shape
    if model.cfg.num_maskmem == 0:
        return top
    if is_init_cond_frame:
        if model.cfg.directly_add_no_mem_embed:
            return top + model.no_mem_embed.reshape(1, c, 1, 1)
        memory = (model.no_mem_embed.expand(b, 1, -1), model.no_mem_pos_enc.expand(b, 1, -1), 0)
    if memory is None:
        raise ValueError("a frame that is not an initial conditioning frame needs memory")
    mem, mem_pos, n_ptr = memory[:3]
    mask = memory[3] if len(memory) > 3 else None
    curr = top.flatten(2).transpose(1, 2)
    curr_pos = feats.top_pos.flatten(2).transpose(1, 2)
    # the fast path's attention over thousands of memory tokens is most of a tracked frame: bf16 there
    with model.fast_autocast():
        out = model.memory_attention(curr, curr_pos, mem, mem_pos, num_obj_ptr_tokens=n_ptr, memory_mask=mask)
    return out.float().transpose(1, 2).reshape(b, c, h, w)


# --- 4. heads -------------------------------------------------------------------------------


@dataclass
class HeadsOutput:
    low_res_masks: torch.Tensor  # (B, 1, 4h, 4w) best mask
    high_res_masks: torch.Tensor  # (B, 1, S, S)
    ious: torch.Tensor  # (B, M)
    obj_ptr: torch.Tensor  # (B, C)
    object_score_logits: torch.Tensor  # (B, 1)
    # every candidate mask, with ``all_masks=True`` (training supervises them all): (B, M, 4h, 4w), (B, M, S, S)
    low_res_multimasks: torch.Tensor | None = None
    high_res_multimasks: torch.Tensor | None = None


def _with_presence(model: SAM2Model, ptr: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Absent objects (present == False) get the learned no-object pointer instead of theirs."""
    if model.cfg.pred_obj_scores:
        lam = present.float()
        if model.cfg.fixed_no_obj_ptr:
            ptr = lam * ptr
        ptr = ptr + (1 - lam) * model.no_obj_ptr
    return ptr


def sam_heads(
    model: SAM2Model,
    pix_feat: torch.Tensor,
    high_res: list[torch.Tensor],
    points: tuple[torch.Tensor, torch.Tensor] | None,
    mask_inputs: torch.Tensor | None,
    multimask_output: bool,
    all_masks: bool = False,
) -> HeadsOutput:
    """Prompt encoder + mask decoder on memory-conditioned features.

    points: (coords (B, N, 2) in the model frame, labels (B, N)) or None; mask_inputs: (B, 1, H, W)
    logits or None. Only the selected mask is upsampled to full resolution, unless ``all_masks``
    (then every candidate is, and returned too).
    """
    b = pix_feat.shape[0]
    device = pix_feat.device
    if points is None:
        points = (torch.zeros(b, 1, 2, device=device), -torch.ones(b, 1, dtype=torch.int32, device=device))
    pe = model.sam_prompt_encoder
    if mask_inputs is not None and tuple(mask_inputs.shape[-2:]) != tuple(pe.mask_input_size):
        mask_inputs = F.interpolate(
            mask_inputs.float(), size=pe.mask_input_size, mode="bilinear", align_corners=False, antialias=True
        )
    sparse, dense = pe(points=points, boxes=None, masks=mask_inputs)
    masks, ious, tokens, obj_logits = model.sam_mask_decoder(
        image_embeddings=pix_feat,
        image_pe=pe.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask_output,
        repeat_image=False,
        high_res_features=high_res,
    )
    present = obj_logits > 0
    if model.cfg.pred_obj_scores:
        # memory always sees a hard decision between object and no object
        masks = torch.where(present[:, None, None], masks, NO_OBJ_SCORE)
    masks = masks.float()
    token = tokens[:, 0]
    if multimask_output:
        best = torch.argmax(ious, dim=-1)
        rows = torch.arange(b, device=device)
        low = masks[rows, best].unsqueeze(1)
        if tokens.shape[1] > 1:
            token = tokens[rows, best]
    else:
        low = masks
    s = model.image_size
    ptr = _with_presence(model, model.obj_ptr_proj(token), present)
    if all_masks:
        high_all = F.interpolate(masks, size=(s, s), mode="bilinear", align_corners=False)
        high = high_all[rows, best].unsqueeze(1) if multimask_output else high_all
        return HeadsOutput(low, high, ious, ptr, obj_logits, masks, high_all)
    high = F.interpolate(low, size=(s, s), mode="bilinear", align_corners=False)
    return HeadsOutput(low, high, ious, ptr, obj_logits)


def mask_as_output(model: SAM2Model, feats: FrameFeatures, mask_inputs: torch.Tensor) -> HeadsOutput:
    """A mask prompt taken as the output itself (logits -10 / +10); the decoder only makes its pointer."""
    out_scale, out_bias = 20.0, -10.0
    m = mask_inputs.float()
    high = m * out_scale + out_bias
    low = F.interpolate(
        high,
        size=(high.shape[-2] // 4, high.shape[-1] // 4),
        mode="bilinear",
        align_corners=False,
        antialias=True,
    )
    ious = mask_inputs.new_ones(mask_inputs.shape[0], 1).float()
    present = torch.any(m.flatten(1) > 0.0, dim=1)[..., None]
    if model.cfg.use_obj_ptrs_in_encoder:
        ptr = sam_heads(model, feats.top, feats.high_res, None, model.mask_downsample(m), False).obj_ptr
        # presence follows the mask prompt, not the decoder's object score
        ptr = _with_presence(model, ptr, present)
    else:
        ptr = torch.zeros(m.shape[0], model.hidden_dim, device=m.device)
    obj_logits = out_scale * present.float() + out_bias
    return HeadsOutput(low, high, ious, ptr, obj_logits, low, high)


# --- 5. memory encoder -----------------------------------------------------------------------


def non_overlapping(masks: torch.Tensor) -> torch.Tensor:
    """Keep, at each pixel, only the highest-scoring object's logit positive: others are clamped to
    at most -10. masks: (B, 1, H, W)."""
    if masks.shape[0] == 1:
        return masks
    winner = torch.argmax(masks, dim=0, keepdim=True)
    keep = winner == torch.arange(masks.shape[0], device=masks.device)[:, None, None, None]
    return torch.where(keep, masks, torch.clamp(masks, max=-10.0))


def encode_memory(
    model: SAM2Model,
    top: torch.Tensor,
    high_res_masks: torch.Tensor,
    object_score_logits: torch.Tensor,
    is_mask_from_pts: bool,
    binarize_mask_from_pts: bool = True,
    non_overlap: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Memory of a frame: top (B, C, h, w) raw frame features, high_res_masks (B, 1, S, S) logits.

    Returns maskmem_features (B, mem_dim, h, w) and the (B, mem_dim, h, w) position encoding.
    """
    if non_overlap:
        high_res_masks = non_overlapping(high_res_masks)
    return encode_memory_mask(
        model,
        top,
        memory_mask(model, high_res_masks, binarize_mask_from_pts and is_mask_from_pts),
        object_score_logits,
    )


def memory_mask(model: SAM2Model, high_res_masks: torch.Tensor, binarize: bool) -> torch.Tensor:
    """What the memory encoder sees of a mask's logits: the mask itself (``binarize``: the mask the user
    saw after clicking) or its sigmoid, scaled and shifted as configured."""
    cfg = model.cfg
    mask = (high_res_masks > 0).float() if binarize else torch.sigmoid(high_res_masks)
    if cfg.sigmoid_scale_for_mem_enc != 1.0:
        mask = mask * cfg.sigmoid_scale_for_mem_enc
    if cfg.sigmoid_bias_for_mem_enc != 0.0:
        mask = mask + cfg.sigmoid_bias_for_mem_enc
    return mask


def encode_memory_mask(
    model: SAM2Model, top: torch.Tensor, mask: torch.Tensor, object_score_logits: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`encode_memory` after :func:`memory_mask`: the memory encoder, and the no-object
    embedding added to absent objects' memories."""
    feats, pos = model.memory_encoder(top, mask, skip_mask_sigmoid=True)
    if model.no_obj_embed_spatial is not None:
        absent = 1 - (object_score_logits > 0).float()
        feats = feats + absent[..., None, None] * model.no_obj_embed_spatial[..., None, None].expand(
            *feats.shape
        )
    return feats, pos
