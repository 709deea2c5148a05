"""kernels.upsample: every strategy equals ``F.interpolate(...) > threshold`` (the plain expression)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from samkit import policy, transforms
from samkit.kernels import upsample as T

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
    assert (
        len(tile_calls) == 1
    )  # consulted (it may hand a mask with many edges to the banded path)  # the path under test was taken
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
    assert len(tile_calls) == 1  # consulted (it may hand a mask with many edges to the banded path)
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
    got = transforms.postprocess_masks(low, (300, 200), 0.0, binary=True, compiled=True)
    assert torch.equal(got, transforms.postprocess_masks(low, (300, 200), 0.0, binary=True))
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


def test_policy_interpolate_takes_the_plain_expression(tile_calls):
    """The policy's upsample="interpolate" (GPUs) is exactly the plain expression, on any machine."""
    low = _disc_logits(3, 64, 64, seed=2).view(1, 3, 64, 64)
    with policy.override(upsample="interpolate"):
        got = T.upsample_threshold(low, (300, 200), 0.0)
    assert tile_calls == []
    assert torch.equal(got, T.upsample_threshold_plain(low, (300, 200), 0.0))
    # and the CPU's "tiles" takes the tile path, with the same masks away from the threshold
    tiled = T.upsample_threshold(low, (300, 200), 0.0)
    assert len(tile_calls) == 1  # consulted (it may hand a mask with many edges to the banded path)
    logits = _interp(low.view(3, 64, 64), (300, 200)).view(1, 3, 300, 200)
    assert not ((tiled != got) & (logits.abs() > 1e-4)).any()
