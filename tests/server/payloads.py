"""Images as the annotation tools send them."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image


def data_uri(frame: np.ndarray) -> str:
    """A PNG ``data:`` URI (Label Studio's uploads, X-AnyLabeling's requests)."""
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
