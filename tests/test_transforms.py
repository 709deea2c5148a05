"""Pre/post-processing: image conversion, coordinates, connected components, hole/sprinkle clean-up."""

from __future__ import annotations

import warnings
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


# --- banded upsampling (upsample_threshold, upsampled_bands, upsampled_mask_stats) -------------


def _smooth_logits(n: int, h: int, w: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, h, w, generator=g) * 8
    return torch.nn.functional.avg_pool2d(x, 5, 1, 2)[:, 0] + torch.linspace(-3, 3, n).view(n, 1, 1)


def _interp(low: torch.Tensor, size) -> torch.Tensor:
    return torch.nn.functional.interpolate(low[:, None], size=size, mode="bilinear", align_corners=False)[
        :, 0
    ]


SIZES = [(1500, 2250), (37, 300), (256, 256), (100, 64), (1, 1), (513, 7)]


@pytest.mark.parametrize("size", SIZES)
def test_upsampled_bands_equal_interpolate(size):
    low = _smooth_logits(3, 64, 48, seed=size[0])
    ref = _interp(low, size)
    got = torch.empty_like(ref)
    covered = 0
    for r0, r1, band in T.upsampled_bands(low, size):
        got[:, r0:r1] = band
        covered += r1 - r0
    assert covered == size[0]
    scale = float(ref.abs().max())
    assert float((got - ref).abs().max()) <= 1e-6 * scale
    # written in place into a caller's tensor: the same values, each band a view of it
    into = torch.full_like(ref, float("nan"))
    for r0, r1, band in T.upsampled_bands(low, size, out=into):
        assert band.data_ptr() == into[:, r0:r1].data_ptr()
    assert torch.equal(into, got)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("threshold", [0.0, 1.5])
def test_upsample_threshold_equals_interpolate_then_threshold(size, threshold):
    low = _smooth_logits(4, 64, 48, seed=7).view(2, 2, 64, 48)
    ref = (_interp(low.view(4, 64, 48), size) > threshold).float().view(2, 2, *size)
    logits = _interp(low.view(4, 64, 48), size).view(2, 2, *size)
    got = T.upsample_threshold(low, size, threshold)
    assert got.dtype == torch.float32 and got.shape == ref.shape
    assert set(got.unique().tolist()) <= {0.0, 1.0}
    assert 0.0 < float(ref.mean()) < 1.0 or size == (1, 1)
    # only pixels whose logit is within float rounding of the threshold may differ
    differ = got != ref
    assert not (differ & ((logits - threshold).abs() > 1e-4)).any()


def test_upsample_threshold_with_infinite_logits_is_exact():
    # -inf masks (the AMG decoder's skipped prompts) cannot go through a matmul: -inf x 0 = NaN
    low = _smooth_logits(2, 32, 32, seed=3).view(1, 2, 32, 32)
    low[0, 1] = float("-inf")
    got = T.upsample_threshold(low, (90, 70), 0.0)
    ref = (_interp(low[0], (90, 70)) > 0).float()
    assert torch.equal(got[0], ref)
    assert not got[0, 1].any()


# --- flat tiles skipped (upsample_threshold on masks with few edges) -----------------------------


def _disc_logits(n: int, h: int, w: int, seed: int) -> torch.Tensor:
    """Object-like logits, as a trained model gives them: per mask a disc of random centre and radius,
    the logit twice the signed distance to its rim (low-res pixels), clipped at +-20."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    out = []
    for _ in range(n):
        cy, cx = float(torch.rand(1, generator=g)) * h, float(torch.rand(1, generator=g)) * w
        r = (0.15 + 0.3 * float(torch.rand(1, generator=g))) * min(h, w)
        out.append((2 * (r - ((yy - cy) ** 2 + (xx - cx) ** 2).sqrt())).clamp(-20, 20))
    return torch.stack(out)


# whole tiles and cut ones (the last band of rows or columns shorter), one tile, and downscaling
TILE_SIZES = [(1500, 2250), (700, 300), (64, 128), (130, 257), (513, 40), (200, 150)]


@pytest.mark.parametrize("size", TILE_SIZES)
@pytest.mark.parametrize("threshold", [0.0, 1.5])
def test_flat_tiles_give_the_masks_of_interpolate_then_threshold(size, threshold, tile_calls, monkeypatch):
    # small outputs have edges in most of their few tiles and would take the banded path: here the
    # tiles are used whatever the share of edges, to test them at every size
    monkeypatch.setattr(T, "_MAX_EDGE_TILES", 1.0)
    low = _disc_logits(6, 256, 256, seed=size[0]).view(2, 3, 256, 256)
    logits = _interp(low.view(6, 256, 256), size).view(2, 3, *size)
    got = T.upsample_threshold(low, size, threshold)
    assert tile_calls == [True]  # the path under test was taken
    assert got.dtype == torch.float32 and got.shape == (2, 3, *size) and got.is_contiguous()
    assert 0.0 < float(got.mean()) < 1.0
    near = (logits - threshold).abs() <= 1e-4
    assert not ((got != (logits > threshold).float()) & ~near).any()
    # and the banded path's masks, pixel for pixel away from the threshold
    monkeypatch.setattr(T, "_threshold_by_tiles", lambda *args: None)
    assert not ((got != T.upsample_threshold(low, size, threshold)) & ~near).any()


def test_flat_tiles_are_not_computed(monkeypatch):
    # at 1500x2250, 432 tiles a mask: a disc's rim crosses a few dozen; the others are never
    # upsampled (numpy's matmul runs once per edge tile, twice over)
    low = _disc_logits(3, 256, 256, seed=4).view(1, 3, 256, 256)
    products = []
    real_greater = np.greater

    def counting_greater(*args, **kwargs):
        products.append(args[0].shape)
        return real_greater(*args, **kwargs)

    monkeypatch.setattr(T.np, "greater", counting_greater)
    got = T.upsample_threshold(low, (1500, 2250), 0.0)
    assert 0 < len(products) < 0.4 * 3 * 432
    assert all(shape[0] <= T._TILE_ROWS and shape[1] <= T._TILE_COLS for shape in products)
    monkeypatch.setattr(T.np, "greater", real_greater)
    assert torch.equal(got[0], (_interp(low[0], (1500, 2250)) > 0).float())


def test_masks_with_edges_everywhere_take_the_banded_path(tile_calls):
    noise = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    got = T.upsample_threshold(noise, (300, 400), 0.0)
    assert tile_calls == [False]
    logits = _interp(noise[0], (300, 400))
    assert not ((got[0] != (logits > 0).float()) & ((logits).abs() > 1e-4)).any()


@pytest.mark.parametrize("value", [3.0, -3.0])
def test_flat_masks_are_filled_without_upsampling(value, tile_calls, monkeypatch):
    # all logits on one side of the threshold: every tile is flat, nothing is multiplied
    monkeypatch.setattr(T.np, "greater", None)  # would fail if called
    low = torch.full((1, 2, 256, 256), value)
    low[0, 1] = -value  # the other mask the other way
    got = T.upsample_threshold(low, (333, 517), 0.0)
    assert tile_calls == [True]
    assert torch.equal(got[0, 0], torch.full((333, 517), float(value > 0)))
    assert torch.equal(got[0, 1], torch.full((333, 517), float(value < 0)))


def test_logits_at_the_threshold_are_not_above_it(monkeypatch):
    # 2x upsampling mixes with weights 1/4 and 3/4, so logits exactly at the threshold upsample to
    # exactly the threshold: every pixel 0. A tile whose logits only reach the threshold is not flat
    monkeypatch.setattr(T, "_MAX_EDGE_TILES", 1.0)
    low = torch.full((1, 1, 256, 256), 1.5)
    low[0, 0, :100] = 3.0  # and some flat ones above it
    got = T.upsample_threshold(low, (512, 512), 1.5)
    assert torch.equal(got[0, 0], (_interp(low[0], (512, 512)) > 1.5).float()[0])
    assert not got[0, 0, 202:].any() and got[0, 0, :198].all()


# --- the compiled vertical pass (load_model(..., compile=True)) ---------------------------------


def _unique_graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def test_compiled_upsample_threshold_equals_eager_for_every_size_after_one_compile():
    assert T.warm_up_compiled() and T.compile_error() is None
    graphs = _unique_graphs()
    for size in [s for s in SIZES if 1 not in s]:
        for threshold in (0.0, 1.5):
            low = _smooth_logits(4, 64, 48, seed=size[1]).view(2, 2, 64, 48)
            logits = _interp(low.view(4, 64, 48), size).view(2, 2, *size)
            got = T.upsample_threshold(low, size, threshold, compiled=True)
            eager = T.upsample_threshold(low, size, threshold)
            assert got.dtype == torch.float32 and got.shape == (2, 2, *size) and got.is_contiguous()
            assert 0.0 < float(got.mean()) < 1.0
            # the same two-term sums: only pixels within float rounding of the threshold may differ
            near = (logits - threshold).abs() <= 1e-4
            assert not ((got != eager) & ~near).any()
            assert not ((got != (logits > threshold).float()) & ~near).any()
    # the sizes are symbolic in the compiled code: new image sizes did not compile it again
    assert _unique_graphs() == graphs
    # one mask (multimask_output=False), and the postprocessing entry point the predictors use
    low = _smooth_logits(1, 64, 64, seed=1).view(1, 1, 64, 64)
    got = T.postprocess_masks(low, (300, 200), 0.0, binary=True, compiled=True)
    assert torch.equal(got, T.postprocess_masks(low, (300, 200), 0.0, binary=True))
    assert _unique_graphs() == graphs


def test_compile_failure_warns_once_and_stays_on_the_eager_path(monkeypatch):
    def broken_compile(fn, **kwargs):
        def run(*args):
            raise RuntimeError("no C++ compiler found\nmore detail")

        return run

    monkeypatch.setattr(T, "_compiled_state", {"fn": None, "error": None})
    monkeypatch.setattr(torch, "compile", broken_compile)
    low = _smooth_logits(2, 32, 32, seed=3).view(1, 2, 32, 32)
    with pytest.warns(RuntimeWarning, match="using the eager path"):
        got = T.upsample_threshold(low, (90, 70), 0.0, compiled=True)
    assert torch.equal(got, T.upsample_threshold(low, (90, 70), 0.0))
    assert T.compile_error() == "RuntimeError: no C++ compiler found"
    assert T.compiled_row_mixer() is None and not T.warm_up_compiled()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning: compiling is not tried again
        assert torch.equal(T.upsample_threshold(low, (90, 70), 0.0, compiled=True), got)


def test_postprocess_binary_matches_postprocess_then_threshold():
    low = _smooth_logits(3, 64, 64, seed=5).view(1, 3, 64, 64)
    ref = T.postprocess_masks(low, (300, 200), 0.0, 20, 20) > 0
    got = T.postprocess_masks(low, (300, 200), 0.0, 20, 20, binary=True)
    logits = T.postprocess_masks(low, (300, 200), 0.0, 20, 20)
    assert not ((got.bool() != ref) & (logits.abs() > 1e-4)).any()
