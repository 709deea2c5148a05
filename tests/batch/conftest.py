"""Fixtures for batch jobs: a folder of generated photos (one of them corrupt) and a prompt file."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

# small, fast automatic-mask settings whose filters keep masks on the random test-tiny weights
AUTO = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}


def make_photos(root, n: int = 6, corrupt: bool = True, seed: int = 0) -> list[str]:
    """n generated pictures (a few in a sub-folder, sizes differ) plus, optionally, a corrupt one.
    Returns the keys of the good images."""
    rng = np.random.default_rng(seed)
    keys = []
    for i in range(n):
        h, w = 96 + 8 * i, 128 + 4 * (i % 3)
        img = (rng.random((h, w, 3)) * 60).astype(np.uint8)
        y, x = rng.integers(10, h // 2), rng.integers(10, w // 2)
        img[y : y + h // 3, x : x + w // 3] = rng.integers(120, 255, 3)  # one bright object
        key = f"sub/p{i}.png" if i % 3 == 1 else f"p{i}.jpg"
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(path, quality=95)
        keys.append(key)
    if corrupt:
        (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    (root / "notes.txt").write_text("not an image, ignored")
    return keys


def write_prompts(path, keys, extra: list[dict] = ()) -> None:
    with open(path, "w") as f:
        for i, k in enumerate(keys):
            f.write(json.dumps({"image": k, "points": [[40 + i, 30]], "labels": [1]}) + "\n")
            if i % 2 == 0:  # a second object: a box, and a box with a negative click
                f.write(json.dumps({"image": k, "box": [10, 10, 90, 70]}) + "\n")
                f.write(
                    json.dumps({"image": k, "box": [5, 5, 60, 50], "points": [[20, 20]], "labels": [0]})
                    + "\n"
                )
        for line in extra:
            f.write(json.dumps(line) + "\n")


@pytest.fixture()
def photos(tmp_path):
    root = tmp_path / "photos"
    keys = make_photos(root)
    return root, keys


@pytest.fixture()
def prompt_file(tmp_path, photos):
    path = tmp_path / "prompts.jsonl"
    write_prompts(path, photos[1] + ["broken.jpg"], extra=[{"image": "gone/missing.jpg", "points": [[1, 1]]}])
    return path
