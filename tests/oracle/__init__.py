"""The oracle: Meta's reference package `sam2==1.1.0`, made runnable on a CPU-only machine.

- a stand-in for torchvision (tests/oracle/stubs) so its predictors import;
- a plain connected-components `sam2._C` so its hole filling runs on the CPU (scipy, 8-connectivity);
- its video predictor's bfloat16 cast of stored memories neutralized for float32 CPU runs;
- helpers that build the reference model from its own yaml configs, perturb every parameter with a
  fixed seed and save it as an official `{"model": state_dict}` checkpoint.
"""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import numpy as np
import torch

STUBS = Path(__file__).parent / "stubs"
CACHE = Path(
    os.environ.get("SAMKIT_TEST_CACHE", Path(__file__).resolve().parents[2] / ".cache" / "test-checkpoints")
)
# bump when perturbed_state_dict changes, so cached files are remade
CHECKPOINT_VERSION = 2

# samkit variant name -> reference yaml config
REFERENCE_CONFIGS = {
    "sam2-hiera-tiny": "configs/sam2/sam2_hiera_t.yaml",
    "sam2-hiera-small": "configs/sam2/sam2_hiera_s.yaml",
    "sam2-hiera-base-plus": "configs/sam2/sam2_hiera_b+.yaml",
    "sam2-hiera-large": "configs/sam2/sam2_hiera_l.yaml",
    "sam2.1-hiera-tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "sam2.1-hiera-small": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "sam2.1-hiera-base-plus": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "sam2.1-hiera-large": "configs/sam2.1/sam2.1_hiera_l.yaml",
}


def available() -> bool:
    try:
        import hydra  # noqa: F401
        import sam2  # noqa: F401
    except Exception:
        return False
    return True


def _connected_components(mask: torch.Tensor):
    """(N, 1, H, W) uint8 -> labels, areas (both (N, 1, H, W) int32), 8-connectivity, like sam2's kernel."""
    from scipy import ndimage

    m = mask.cpu().numpy().astype(bool)
    labels = np.zeros(m.shape, dtype=np.int32)
    areas = np.zeros(m.shape, dtype=np.int32)
    for i in range(m.shape[0]):
        lab, n = ndimage.label(m[i, 0], structure=np.ones((3, 3), dtype=int))
        counts = np.bincount(lab.ravel(), minlength=n + 1)
        counts[0] = 0
        labels[i, 0] = lab
        areas[i, 0] = counts[lab]
    return torch.from_numpy(labels).to(mask.device), torch.from_numpy(areas).to(mask.device)


def setup() -> None:
    """Make `import sam2` and its predictors work here. Idempotent."""
    if str(STUBS) not in sys.path:
        sys.path.insert(0, str(STUBS))
    import sam2

    if "sam2._C" not in sys.modules:
        mod = types.ModuleType("sam2._C")
        mod.get_connected_componnets = _connected_components  # (sic) the reference's spelling
        sys.modules["sam2._C"] = mod
        sam2._C = mod
    _neutralize_bf16_memory_cast()


def _neutralize_bf16_memory_cast() -> None:
    """The reference video predictor stores `maskmem_features` as bfloat16 to save GPU memory, which
    only works under CUDA autocast; for float32 CPU runs we keep them float32 by turning
    `.to(torch.bfloat16)` into a no-op inside the two methods that do the cast."""
    from sam2 import sam2_video_predictor as vp

    if getattr(vp, "_samkit_neutralized", False):
        return
    real_to = torch.Tensor.to

    def to_without_bf16(t, *a, **k):
        if (a and a[0] is torch.bfloat16) or k.get("dtype") is torch.bfloat16:
            return t
        return real_to(t, *a, **k)

    def keep_float32(method):
        def wrapper(self, *args, **kwargs):
            torch.Tensor.to = to_without_bf16
            try:
                return method(self, *args, **kwargs)
            finally:
                torch.Tensor.to = real_to

        return wrapper

    cls = vp.SAM2VideoPredictor
    cls._run_memory_encoder = keep_float32(cls._run_memory_encoder)
    cls._run_single_frame_inference = keep_float32(cls._run_single_frame_inference)
    vp._samkit_neutralized = True


def build_reference(variant: str, checkpoint: str | os.PathLike | None = None, video: bool = False):
    """The reference model for a samkit variant name, on the CPU in eval mode."""
    setup()
    from sam2.build_sam import build_sam2, build_sam2_video_predictor

    cfg = REFERENCE_CONFIGS[variant]
    builder = build_sam2_video_predictor if video else build_sam2
    return builder(cfg, str(checkpoint) if checkpoint else None, device="cpu")


def perturbed_state_dict(variant: str, seed: int = 0, scale: float = 0.02) -> dict[str, torch.Tensor]:
    """The reference model's freshly initialized parameters plus seeded Gaussian noise.

    Noise makes every tensor matter, zero-initialized ones (position embeddings, layer scales) too.
    """
    torch.manual_seed(seed)
    model = build_reference(variant)
    gen = torch.Generator().manual_seed(seed + 1)
    sd = model.state_dict()
    out = {}
    for k, v in sd.items():
        if v.is_floating_point():
            noise = torch.randn(v.shape, generator=gen, dtype=v.dtype) * scale
            out[k] = (v + noise).contiguous()
        else:
            out[k] = v.clone()
    # Random weights judge every object absent (object score < 0), which would make every tracked
    # mask NO_OBJ_SCORE and video comparisons vacuous: raise the object-score bias so they are present.
    out["sam_mask_decoder.pred_obj_score_head.layers.2.bias"] += 1.0
    return out


def make_checkpoint(variant: str, path: str | os.PathLike, seed: int = 0) -> Path:
    """Save a perturbed reference model as an official `{"model": state_dict}` checkpoint."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save({"model": perturbed_state_dict(variant, seed)}, tmp)
        os.replace(tmp, path)
    return path


def checkpoint(variant: str, seed: int = 0) -> Path:
    """The perturbed checkpoint of a variant, made once and cached under CACHE."""
    return make_checkpoint(variant, CACHE / f"{variant}-seed{seed}-v{CHECKPOINT_VERSION}.pt", seed=seed)


def reference_video_state(predictor, frames: list[np.ndarray]):
    """A reference video session on in-memory RGB frames (its mp4 reader needs decord, which is not
    installed here). The frames are prepared the way its JPEG loader prepares files: PIL resize to
    the model size, /255 in float64, then ImageNet mean/std in float32."""
    from PIL import Image
    from sam2 import sam2_video_predictor as vp

    s = predictor.image_size
    images = torch.stack(
        [
            torch.from_numpy(np.array(Image.fromarray(f).resize((s, s))) / 255.0).permute(2, 0, 1)
            for f in frames
        ]
    ).float()
    images -= torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    images /= torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    h, w = frames[0].shape[:2]
    real = vp.load_video_frames
    vp.load_video_frames = lambda **kw: (images, h, w)
    try:
        return predictor.init_state("<frames>")
    finally:
        vp.load_video_frames = real


# --- the reference trainer (Meta's `training` package, shipped in the sam2 wheel) -----------------

# SAM2Train's settings in Meta's SAM 2.1 fine-tuning config (sam2.1_hiera_b+_MOSE_finetune.yaml)
REFERENCE_TRAIN_SETTINGS = {
    "prob_to_use_pt_input_for_train": 0.5,
    "prob_to_use_box_input_for_train": 0.5,
    "prob_to_sample_from_gt_for_train": 0.1,
    "num_frames_to_correct_for_train": 2,
    "rand_frames_to_correct_for_train": True,
    "add_all_frames_to_correct_as_cond": True,
    "num_init_cond_frames_for_train": 2,
    "rand_init_cond_frames_for_train": True,
    "num_correction_pt_per_frame": 7,
}


def setup_training() -> None:
    """Make `training.model.sam2` and `training.loss_fns` importable: tensordict is stubbed (see
    stubs/), and `training.trainer` (which pulls in tensorboard and the whole trainer) is replaced by
    the one constant the loss module takes from it."""
    setup()
    if "training.trainer" not in sys.modules:
        import training

        mod = types.ModuleType("training.trainer")
        mod.CORE_LOSS_KEY = "core_loss"
        sys.modules["training.trainer"] = mod
        training.trainer = mod


def build_reference_train(variant: str, checkpoint, image_size: int, **settings):
    """Meta's SAM2Train for a samkit variant (its inference yaml plus the fine-tuning settings above,
    overridden by ``settings``), weights loaded strictly, in train mode on the CPU."""
    setup_training()
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    values = {**REFERENCE_TRAIN_SETTINGS, **settings}
    overrides = ["model._target_=training.model.sam2.SAM2Train", f"++model.image_size={image_size}"]
    overrides += [f"++model.{k}={v}" for k, v in values.items()]
    if not GlobalHydra.instance().is_initialized():
        initialize_config_module("sam2", version_base="1.2")
    cfg = compose(config_name=REFERENCE_CONFIGS[variant], overrides=overrides)
    OmegaConf.resolve(cfg)
    model = instantiate(cfg.model, _recursive_=True)
    sd = torch.load(checkpoint, map_location="cpu", weights_only=True)["model"]
    model.load_state_dict(sd, strict=True)
    return model.train()


def reference_train_loss():
    """Meta's loss with the fine-tuning config's weights and options."""
    setup_training()
    from training.loss_fns import MultiStepMultiMasksAndIous

    return MultiStepMultiMasksAndIous(
        weight_dict={"loss_mask": 20, "loss_dice": 1, "loss_iou": 1, "loss_class": 1},
        supervise_all_iou=True,
        iou_use_l1_loss=True,
        pred_obj_scores=True,
        focal_gamma_obj_score=0.0,
        focal_alpha_obj_score=-1.0,
    )
