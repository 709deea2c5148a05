"""Fine-tuning SAM 2 with Meta's training recipe (``samkit train``; :func:`fit` in Python).

- :mod:`~samkit.train.data` — datasets (COCO, mask folders, DAVIS/MOSE, SA-V), sampling and mixing;
  :mod:`~samkit.train.augment` — Meta's augmentations on tensors;
- :mod:`~samkit.train.prompting` — simulated clicks, boxes and correction clicks;
- :mod:`~samkit.train.forward` — the training forward (Meta's ``SAM2Train``);
- :mod:`~samkit.train.loss` — the multi-step loss (Meta's ``MultiStepMultiMasksAndIous``);
- :mod:`~samkit.train.optim` — AdamW groups with layer decay, the cosine schedule, freezing;
- :mod:`~samkit.train.lora` — LoRA on the attention projections;
- :mod:`~samkit.train.loop` — :func:`fit`: resumable, data parallel under torchrun.
"""

from .augment import AugmentSettings, augment
from .batch import Batch, Sample, collate
from .data import (
    CocoImages,
    DataError,
    DavisVideos,
    MaskFolderImages,
    MixedDataset,
    RawSample,
    SavVideos,
    TrainDataset,
    parse_data_spec,
    split,
)
from .forward import FrameResult, train_forward
from .loop import FitResult, TrainSettings, distributed, fit, validate
from .loss import LossWeights, MultiStepLoss
from .optim import OptimSettings
from .prompting import PromptSimulation

__all__ = [
    "AugmentSettings",
    "Batch",
    "CocoImages",
    "DataError",
    "DavisVideos",
    "FitResult",
    "FrameResult",
    "LossWeights",
    "MaskFolderImages",
    "MixedDataset",
    "MultiStepLoss",
    "OptimSettings",
    "PromptSimulation",
    "RawSample",
    "Sample",
    "SavVideos",
    "TrainDataset",
    "TrainSettings",
    "augment",
    "collate",
    "distributed",
    "fit",
    "parse_data_spec",
    "split",
    "train_forward",
    "validate",
]
