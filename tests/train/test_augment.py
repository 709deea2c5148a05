"""samkit.train.augment: the reference's video training transforms on tensors."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from samkit.train.augment import AugmentSettings, augment
from samkit.train.batch import IMAGENET_MEAN, IMAGENET_STD

MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def unnormalize(x: torch.Tensor) -> torch.Tensor:
    return x * STD + MEAN


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def square_clip(t: int = 2, h: int = 48, w: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """A white rectangle on black (the same in every frame) and its mask, plus a second object."""
    frames = torch.zeros(t, 3, h, w, dtype=torch.uint8)
    masks = torch.zeros(t, 2, h, w, dtype=torch.bool)
    frames[:, :, 12:30, 20:44] = 255
    masks[:, 0, 12:30, 20:44] = True
    masks[:, 1, 35:40, 5:12] = True
    return frames, masks


def only(size: int, **kw) -> AugmentSettings:
    """No augmentation but the fields given."""
    return replace(AugmentSettings.none(size), **kw)


def test_shapes_and_dtypes():
    frames, masks = square_clip(t=3, h=40, w=56)
    out, out_masks = augment(frames, masks, AugmentSettings(size=64), gen(0))
    assert out.shape == (3, 3, 64, 64) and out.dtype == torch.float32
    assert out_masks.shape == (3, 2, 64, 64) and out_masks.dtype == torch.bool
    assert torch.isfinite(out).all()


def test_defaults_are_the_reference_finetune_transforms():
    s = AugmentSettings()
    assert (s.size, s.hflip, s.degrees, s.shear, s.grayscale) == (1024, 0.5, 25.0, 20.0, 0.05)
    assert (s.brightness, s.contrast, s.saturation) == (0.1, 0.03, 0.03)
    assert (s.frame_brightness, s.frame_contrast, s.frame_saturation) == (0.1, 0.05, 0.05)


def test_none_is_a_deterministic_resize_and_normalize():
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (2, 3, 32, 48), dtype=torch.uint8, generator=g)
    masks = torch.rand(2, 1, 32, 48, generator=g) > 0.5
    s = AugmentSettings.none(64)
    a, am = augment(frames, masks, s, gen(1))
    b, bm = augment(frames, masks, s, gen(2))
    assert torch.equal(a, b) and torch.equal(am, bm)
    expected = F.interpolate(frames.float() / 255, size=(64, 64), mode="bilinear", align_corners=False)
    torch.testing.assert_close(a, (expected - MEAN) / STD, atol=1e-5, rtol=0)
    expected_masks = F.interpolate(masks.to(torch.uint8), size=(64, 64), mode="nearest-exact").bool()
    assert torch.equal(am, expected_masks)
    # at the training size already: frames only normalized, masks untouched
    c, cm = augment(frames[..., :32], masks[..., :32], AugmentSettings.none(32))
    torch.testing.assert_close(c, (frames[..., :32].float() / 255 - MEAN) / STD)
    assert torch.equal(cm, masks[..., :32])


def test_shrinking_is_antialiased():
    # a one-pixel checkerboard averages to gray when shrunk with antialiasing (not aliased to 0 / 1)
    checker = ((torch.arange(64)[:, None] + torch.arange(64)[None, :]) % 2 * 255).to(torch.uint8)
    frames = checker.expand(1, 3, 64, 64).clone()
    out, _ = augment(frames, torch.ones(1, 1, 64, 64, dtype=torch.bool), AugmentSettings.none(16))
    torch.testing.assert_close(unnormalize(out), torch.full_like(out, 0.5), atol=0.02, rtol=0)


def test_flip_is_consistent_over_frames_and_masks():
    g = torch.Generator().manual_seed(3)
    frames = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8, generator=g)
    masks = torch.rand(3, 2, 32, 32, generator=g) > 0.7
    out, out_masks = augment(frames, masks, only(32, hflip=1.0), gen(0))
    torch.testing.assert_close(unnormalize(out), frames.flip(-1).float() / 255, atol=1e-5, rtol=0)
    assert torch.equal(out_masks, masks.flip(-1))
    # p = 0.5: every frame is flipped, or none is
    flipped = []
    for seed in range(12):
        out, out_masks = augment(frames, masks, only(32, hflip=0.5), gen(seed))
        per_frame = [torch.equal(out_masks[t], masks[t].flip(-1)) for t in range(3)]
        assert len(set(per_frame)) == 1
        flipped.append(per_frame[0])
    assert any(flipped) and not all(flipped)


@pytest.mark.parametrize("hw", [(64, 64), (48, 80)])
def test_masks_follow_their_pixels_through_the_geometry(hw):
    """Full augmentation (flip, affine, resize, colour): the mask still covers the bright rectangle."""
    h, w = hw
    frames = torch.zeros(2, 3, h, w, dtype=torch.uint8)
    masks = torch.zeros(2, 1, h, w, dtype=torch.bool)
    frames[:, :, h // 4 : h // 2, w // 5 : w // 2] = 255
    masks[:, 0, h // 4 : h // 2, w // 5 : w // 2] = True
    s = AugmentSettings(size=64, grayscale=0.0)
    warped = 0
    for seed in range(6):
        out, out_masks = augment(frames, masks, s, gen(seed))
        gray = unnormalize(out).mean(dim=1)  # (T, 64, 64)
        for t in range(2):
            inside, outside = gray[t][out_masks[t, 0]], gray[t][~out_masks[t, 0]]
            assert inside.numel() > 0
            # the fill outside the image is the ImageNet mean (~0.45), the background black (0)
            assert inside.mean() > 0.85 and (inside > 0.5).float().mean() > 0.95
            assert (outside > 0.75).float().mean() < 0.02
        plain = augment(frames, masks, AugmentSettings.none(64))[1]
        warped += not torch.equal(out_masks, plain) and not torch.equal(out_masks, plain.flip(-1))
    assert warped >= 4  # the affine does run


def test_seeded_generator_is_reproducible():
    frames, masks = square_clip(t=3)
    s = AugmentSettings(size=48)
    a = augment(frames, masks, s, gen(7))
    b = augment(frames, masks, s, gen(7))
    c = augment(frames, masks, s, gen(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_affine_keeps_first_frame_objects():
    # a 3x3 object in the corner leaves the image under almost any rotation: the affine is redrawn
    # and then skipped, never emptying the object
    frames = torch.full((2, 3, 40, 40), 100, dtype=torch.uint8)
    masks = torch.zeros(2, 2, 40, 40, dtype=torch.bool)
    masks[:, 0, :3, :3] = True
    masks[:, 1, 15:25, 15:25] = True
    s = only(40, degrees=25.0, shear=20.0)
    for seed in range(15):
        _, out_masks = augment(frames, masks, s, gen(seed))
        assert out_masks[0].flatten(1).any(dim=1).all()
    # an object that is absent from the first frame does not block the affine
    masks[0, 0] = False
    changed = sum(not torch.equal(augment(frames, masks, s, gen(seed))[1], masks) for seed in range(5))
    assert changed >= 4


def test_affine_fill_is_the_imagenet_mean():
    frames = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    masks = torch.zeros(1, 1, 32, 32, dtype=torch.bool)
    masks[0, 0, 12:20, 12:20] = True
    s = only(32, degrees=25.0, shear=20.0)
    for seed in range(5):
        out, _ = augment(frames, masks, s, gen(seed))
        corner = unnormalize(out)[0, :, 0, 0]
        if corner.abs().sum() > 0:  # the corner came from outside the image
            torch.testing.assert_close(corner, torch.tensor(IMAGENET_MEAN), atol=1e-4, rtol=0)
            return
    pytest.fail("no affine moved the corner")


def test_grayscale_makes_channels_equal():
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=g)
    masks = torch.ones(2, 1, 32, 32, dtype=torch.bool)
    out, _ = augment(frames, masks, AugmentSettings(size=32, grayscale=1.0), gen(0))
    rgb = unnormalize(out)
    torch.testing.assert_close(rgb[:, 0], rgb[:, 1], atol=1e-5, rtol=0)
    torch.testing.assert_close(rgb[:, 1], rgb[:, 2], atol=1e-5, rtol=0)
    out, _ = augment(frames, masks, AugmentSettings(size=32, grayscale=0.0), gen(0))
    assert (unnormalize(out)[:, 0] - unnormalize(out)[:, 1]).abs().max() > 0.1


def test_clip_jitter_is_consistent_and_frame_jitter_is_not():
    g = torch.Generator().manual_seed(0)
    frame = torch.randint(30, 220, (1, 3, 24, 24), dtype=torch.uint8, generator=g)
    frames = frame.expand(4, -1, -1, -1).clone()
    masks = torch.ones(4, 1, 24, 24, dtype=torch.bool)
    out, _ = augment(frames, masks, only(24, brightness=0.3, contrast=0.3, saturation=0.3), gen(1))
    assert all(torch.equal(out[0], out[t]) for t in range(1, 4))
    assert not torch.allclose(out[0], augment(frame, masks[:1], AugmentSettings.none(24))[0][0])
    out, _ = augment(frames, masks, only(24, frame_brightness=0.3, frame_contrast=0.3), gen(1))
    assert not torch.allclose(out[0], out[1])


def test_validation():
    with pytest.raises(ValueError, match="hflip"):
        AugmentSettings(hflip=1.5)
    with pytest.raises(ValueError, match="size"):
        AugmentSettings(size=0)
    frames, masks = square_clip()
    with pytest.raises(TypeError, match="uint8"):
        augment(frames.float(), masks, AugmentSettings.none(32))
    with pytest.raises(ValueError, match="masks"):
        augment(frames, masks[:, :, :10], AugmentSettings.none(32))
    assert AugmentSettings().with_size(512).size == 512


def test_affine_at_training_size_has_the_original_geometry():
    """Warping at the training size with the conjugated matrix matches warping at the original
    (non-square) size and then resizing, as the reference does."""
    import kornia

    from samkit.train.augment import _affine_matrix, _resize_masks, _warp_masks

    h, w, size = 60, 100, 64
    masks = torch.zeros(1, 1, h, w, dtype=torch.bool)
    masks[0, 0, 10:40, 30:90] = True
    for angle, shear in [(20.0, 0.0), (-15.0, 12.0), (5.0, -18.0)]:
        center = torch.tensor([[(w - 1) / 2, (h - 1) / 2]])
        m = kornia.geometry.transform.get_affine_matrix2d(
            torch.zeros(1, 2),
            center,
            torch.ones(1, 2),
            torch.tensor([angle]),
            torch.tensor([shear]).deg2rad(),
        )[:, :2]
        at_original = kornia.geometry.transform.warp_affine(
            masks.float(), m, (h, w), mode="nearest", align_corners=True
        )
        reference = _resize_masks(at_original > 0.5, size)
        ours = _warp_masks(
            _resize_masks(masks, size), _affine_matrix(angle, shear, (h, w), size, torch.float32)
        )
        iou = (reference & ours).sum() / (reference | ours).sum()
        assert iou > 0.93, (angle, shear, float(iou))
