"""What every predictor shares: loading by name, and the model's device and input size."""

from __future__ import annotations

import torch

from ..modeling import SAM2Model


class ModelBacked:
    """Mixin for classes holding a :class:`SAM2Model` as ``self.model``."""

    model: SAM2Model

    @classmethod
    def from_pretrained(cls, model_id: str, **kwargs):
        """Load an official variant (downloading it once) and wrap it, e.g.
        ``from_pretrained("facebook/sam2.1-hiera-tiny")``; ``checkpoint=`` and ``device=`` go to
        :func:`samkit.load_model`, the rest to the constructor."""
        from ..checkpoints import load_model

        load_kw = {k: kwargs.pop(k) for k in ("checkpoint", "device") if k in kwargs}
        return cls(load_model(model_id, **load_kw), **kwargs)

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def image_size(self) -> int:
        return self.model.image_size
