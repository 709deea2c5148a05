"""Pre/post-processing: image conversion, coordinates, connected components, hole/sprinkle clean-up."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
import torch
from PIL import Image

from samkit import transforms as T


def bfs_components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Straightforward 8-connected labelling by breadth-first search (the test's own reference)."""
    h, w = mask.shape
    labels = np.zeros((h, w), np.int32)
    areas = np.zeros((h, w), np.int32)
    n = 0
    for sy in range(h):
        for sx in range(w):
            if not mask[sy, sx] or labels[sy, sx]:
                continue
            n += 1
            queue, members = deque([(sy, sx)]), []
            labels[sy, sx] = n
            while queue:
                y, x = queue.popleft()
                members.append((y, x))
                for dy in (-1, 0, 1):
                    for dx in (-1, 0, 1):
                        yy, xx = y + dy, x + dx
                        if 0 <= yy < h and 0 <= xx < w and mask[yy, xx] and not labels[yy, xx]:
                            labels[yy, xx] = n
                            queue.append((yy, xx))
            for y, x in members:
                areas[y, x] = len(members)
    return labels, areas


@pytest.mark.parametrize("seed", range(4))
def test_connected_components_match_bfs(seed):
    rng = np.random.default_rng(seed)
    masks = rng.random((3, 40, 50)) < [[[0.3]], [[0.5]], [[0.62]]]
    labels, areas = T.connected_components(masks)
    for m, lab, area in zip(masks, labels, areas):
        ref_lab, ref_area = bfs_components(m)
        np.testing.assert_array_equal(area, ref_area)
        # the same partition (label numbers may differ)
        pairs = set(zip(lab[m].tolist(), ref_lab[m].tolist()))
        assert len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs})


def test_diagonal_pixels_are_connected():
    m = np.eye(5, dtype=bool)
    _, areas = T.connected_components(m[None])
    assert (areas[0][m] == 5).all()


def test_fill_holes_and_remove_sprinkles():
    logits = torch.full((1, 1, 32, 32), -5.0)
    logits[..., 4:20, 4:20] = 5.0  # a square object...
    logits[..., 10:12, 10:12] = -5.0  # ...with a 4-pixel hole
    logits[..., 28, 28] = 5.0  # and a 1-pixel speck
    out = T.postprocess_masks(logits, (32, 32), 0.0, max_hole_area=4, max_sprinkle_area=1)
    assert (out[..., 10:12, 10:12] > 0).all(), "hole not filled"
    assert out[..., 28, 28].item() < 0, "speck not removed"
    assert (out[..., 4:20, 4:20] > 0).all()
    # areas over the limits are kept
    out = T.postprocess_masks(logits, (32, 32), 0.0, max_hole_area=3, max_sprinkle_area=0)
    assert (out[..., 10:12, 10:12] < 0).all() and out[..., 28, 28].item() > 0


def test_postprocess_upsamples_to_original_size():
    out = T.postprocess_masks(torch.randn(2, 3, 16, 16), (50, 70))
    assert out.shape == (2, 3, 50, 70)


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((10, 12), np.uint8),
        np.zeros((10, 12, 1), np.uint8),
        np.zeros((10, 12, 3), np.uint8),
        np.zeros((10, 12, 4), np.uint8),
        np.zeros((10, 12), bool),
        Image.new("L", (12, 10)),
        Image.new("RGBA", (12, 10)),
        Image.new("P", (12, 10)),
        Image.new("I;16", (12, 10)),
    ],
)
def test_images_are_converted_to_rgb(image):
    arr = T.to_rgb_array(image)
    assert arr.shape == (10, 12, 3) and arr.dtype == np.uint8


def test_rgba_drops_alpha_and_gray_repeats():
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 7
    assert (T.to_rgb_array(rgba)[..., 0] == 200).all() and (T.to_rgb_array(rgba)[..., 1:] == 0).all()
    gray = np.full((2, 2), 9, np.uint8)
    assert (T.to_rgb_array(gray) == 9).all()


@pytest.mark.parametrize(
    "image, err, match",
    [
        (np.zeros((10, 12, 3), np.float32), ValueError, "uint8"),
        (np.zeros((10, 12, 2), np.uint8), ValueError, "HxWx3"),
        (np.zeros((3, 10, 12, 3), np.uint8), ValueError, "HxWx3"),
        (np.zeros((0, 12, 3), np.uint8), ValueError, "empty"),
        (torch.zeros(3, 10, 12), TypeError, "torch.Tensor"),
        ("photo.jpg", TypeError, "str"),
    ],
)
def test_bad_images_are_rejected_clearly(image, err, match):
    with pytest.raises(err, match=match):
        T.to_rgb_array(image)


def test_load_image_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        T.load_image(tmp_path / "missing.jpg")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="not an image"):
        T.load_image(bad)


def test_preprocess_matches_manual_normalization():
    img = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    x = T.preprocess_image(img, 64)  # same size: the resize is the identity
    manual = (
        torch.from_numpy(img).permute(2, 0, 1).float() / 255 - torch.tensor(T.IMAGENET_MEAN)[:, None, None]
    ) / torch.tensor(T.IMAGENET_STD)[:, None, None]
    torch.testing.assert_close(x, manual)


def test_coordinates_map_to_model_frame():
    c = T.transform_coords(torch.tensor([[50.0, 25.0]]), (100, 200), 1024)
    torch.testing.assert_close(c, torch.tensor([[256.0, 256.0]]))
    b = T.transform_boxes(torch.tensor([0.0, 0.0, 200.0, 100.0]), (100, 200), 1024)
    torch.testing.assert_close(b, torch.tensor([[[0.0, 0.0], [1024.0, 1024.0]]]))
    n = T.transform_coords(torch.tensor([[0.5, 0.25]]), (100, 200), 1024, normalize=False)
    torch.testing.assert_close(n, torch.tensor([[512.0, 256.0]]))


def _smooth_logits(n: int, h: int, w: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, h, w, generator=g) * 8
    return torch.nn.functional.avg_pool2d(x, 5, 1, 2)[:, 0] + torch.linspace(-3, 3, n).view(n, 1, 1)


def test_postprocess_binary_matches_postprocess_then_threshold():
    low = _smooth_logits(3, 64, 64, seed=5).view(1, 3, 64, 64)
    ref = T.postprocess_masks(low, (300, 200), 0.0, 20, 20) > 0
    got = T.postprocess_masks(low, (300, 200), 0.0, 20, 20, binary=True)
    logits = T.postprocess_masks(low, (300, 200), 0.0, 20, 20)
    assert not ((got.bool() != ref) & (logits.abs() > 1e-4)).any()
