"""What every predictor shares: loading by name, and the model's device and input size."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable

import torch

from ..modeling import SAM2Model


class ModelBacked:
    """Mixin for classes holding a :class:`SAM2Model` as ``self.model``."""

    model: SAM2Model

    @classmethod
    def from_pretrained(cls, model_id: str, **kwargs):
        """Load an official variant (downloading it once) and wrap it, e.g.
        ``from_pretrained("facebook/sam2.1-hiera-tiny")``; :func:`samkit.load_model`'s arguments
        (``checkpoint=``, ``device=``, ``precision=``...) go to it, the rest to the constructor
        (an unknown name raises TypeError)."""
        from ..checkpoints import load_model

        load_names = list(inspect.signature(load_model).parameters)[1:]
        load_kw = {k: kwargs.pop(k) for k in load_names if k in kwargs}
        return cls(load_model(model_id, **load_kw), **kwargs)

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def image_size(self) -> int:
        return self.model.image_size


def unexpected_keyword(owner: str, kwargs: dict, init: Callable) -> TypeError:
    """The TypeError for keyword arguments ``init`` (a constructor taking ``**kwargs``) does not
    know, with the closest known name as a suggestion: a misspelt threshold must not be dropped."""
    name = next(iter(kwargs))
    known = [
        p.name
        for p in inspect.signature(init).parameters.values()
        if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return TypeError(f"{owner} got an unexpected keyword argument {name!r}{hint}")
