"""Drop-in checks with Meta's own client code (issue #31): the examples in examples/ are the steps of
Meta's notebooks and of tools/vos_inference.py, written against the reference's API. Each runs here
twice on the same perturbed checkpoint -- with samkit objects made by samkit's Meta-style builders and
with the reference's -- and the results must agree as the parity tests require. The builders'
argument mapping is checked against what the reference's own builders configure.

To stay quick the sessions use small inputs and a reduced model resolution (both packages at the
same ``image_size``; for the reference's image predictor its hard-coded feature sizes follow it);
the full-size runs are marked slow.
"""

from __future__ import annotations

import functools
import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import oracle
import samkit
from samkit import build_sam as bs

oracle.setup()

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"
VARIANT = "sam2.1-hiera-tiny"
# the model resolution of the quick sessions (the same weights work at any multiple of 32)
SIZE = 128


def example(name: str):
    """Import examples/<name>.py as a module."""
    key = f"samkit_example_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, ROOT / "examples" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


def half(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    return np.asarray(Image.fromarray(image).resize((w // 2, h // 2), Image.Resampling.BILINEAR))


# --- the reference, built by its own builders ---------------------------------------------------


def _feature_sizes(size: int) -> list[tuple[int, int]]:
    return [(size // 4, size // 4), (size // 8, size // 8), (size // 16, size // 16)]


@functools.lru_cache(maxsize=2)
def reference_model(size: int, apply_postprocessing: bool = True):
    oracle.setup()
    from sam2.build_sam import build_sam2

    ckpt = oracle.checkpoint(VARIANT)
    overrides = [] if size == 1024 else [f"++model.image_size={size}"]
    return build_sam2(
        CONFIG,
        str(ckpt),
        device="cpu",
        hydra_overrides_extra=overrides,
        apply_postprocessing=apply_postprocessing,
    )


def reference_image_predictor(size: int):
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    predictor = SAM2ImagePredictor(reference_model(size))
    predictor._bb_feat_sizes = _feature_sizes(size)  # hard-coded for 1024 in the reference
    return predictor


def reference_generator_class(size: int):
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    class Generator(SAM2AutomaticMaskGenerator):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.predictor._bb_feat_sizes = _feature_sizes(size)

    return Generator


@functools.lru_cache(maxsize=2)
def reference_video_predictor(size: int, apply_postprocessing: bool = True):
    oracle.setup()
    from sam2.build_sam import build_sam2_video_predictor

    return build_sam2_video_predictor(
        CONFIG,
        str(oracle.checkpoint(VARIANT)),
        device="cpu",
        hydra_overrides_extra=[f"++model.image_size={size}"],
        apply_postprocessing=apply_postprocessing,
    )


def ours(builder, size: int, **kwargs):
    overrides = [] if size == 1024 else [f"++model.image_size={size}"]
    return builder(
        CONFIG, str(oracle.checkpoint(VARIANT)), device="cpu", hydra_overrides_extra=overrides, **kwargs
    )


# --- comparisons, with the parity tests' tolerances -----------------------------------------------


def assert_close(o, r, what: str, rel: float = 1e-4) -> None:
    o, r = np.asarray(o, dtype=np.float64), np.asarray(r, dtype=np.float64)
    assert o.shape == r.shape, f"{what}: shape {o.shape} != {r.shape}"
    scale = max(float(np.abs(r).max()), 1e-6)
    err = float(np.abs(o - r).max())
    assert err <= rel * scale, f"{what}: max abs diff {err:.3g} > {rel} x {scale:.3g}"


def assert_masks_agree(o, r, what: str, max_fraction: float = 1e-5) -> None:
    """Binary masks equal but for pixels whose logit sits at the threshold (float32 rounding): the
    notebooks keep no full-resolution logits, so a few pixels in a million are allowed."""
    o, r = np.asarray(o), np.asarray(r)
    assert o.shape == r.shape, f"{what}: shape {o.shape} != {r.shape}"
    differ = float((o != r).mean())
    assert differ <= max_fraction, f"{what}: {differ:.2e} of the pixels differ"


def assert_same_annotation(r: dict, o: dict, what: str) -> None:
    """As tests/parity/test_amg_parity.py: the same mask, up to float32 rounding."""
    assert r.keys() == o.keys(), what
    for k in ("point_coords", "crop_box", "bbox"):
        assert r[k] == o[k], f"{what}: {k} {r[k]} != {o[k]}"
    assert abs(r["area"] - o["area"]) <= 3, f"{what}: area {r['area']} != {o['area']}"
    assert abs(r["predicted_iou"] - o["predicted_iou"]) <= 1e-6, what
    assert abs(r["stability_score"] - o["stability_score"]) <= 1e-4, what
    assert int((r["segmentation"] != o["segmentation"]).sum()) <= 3, f"{what}: masks differ"


def compare_video_steps(ref_steps, our_steps) -> None:
    """As tests/parity/test_video_parity.py: every mask agrees on > 99.5% of its pixels and the
    clicks' logits are close on >= 99.9% of them."""
    assert [t for t, _ in our_steps] == [t for t, _ in ref_steps]
    present = []
    for (tag, r), (_, o) in zip(ref_steps, our_steps):
        if isinstance(r, dict):  # a propagation: frame -> obj_id -> (1, H, W) bool
            assert sorted(o) == sorted(r), tag
            for f in r:
                assert list(o[f]) == list(r[f]), (tag, f)
                for obj in r[f]:
                    agree = (o[f][obj] == r[f][obj]).mean()
                    assert agree > 0.995, f"{tag} frame {f} object {obj}: masks agree on {agree:.4%}"
                    present.append(r[f][obj].any())
        else:  # a click: (obj_ids, logits)
            (r_ids, r_logits), (o_ids, o_logits) = r, o
            assert o_ids == r_ids, tag
            assert ((o_logits > 0) == (r_logits > 0)).mean() > 0.995, tag
            close = (np.abs(o_logits - r_logits) <= 1e-3 * max(1.0, float(np.abs(r_logits).max()))).mean()
            assert close >= 0.999, f"{tag}: logits close on only {close:.4%} of pixels"
    assert np.mean(present) > 0.5, "objects absent on most frames: the comparison would prove little"


def bedroom(data_dir, tmp_path: Path, n: int) -> str:
    folder = tmp_path / "bedroom"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        shutil.copy(data_dir / "videos" / "bedroom" / f"{i:05d}.jpg", folder)
    return str(folder)


# --- (a) the notebooks and vos_inference on both packages ---------------------------------------


def _image_notebook(truck, groceries, size: int, scale: float):
    ex = example("image_predictor")
    images = (truck, groceries) if scale == 1 else (half(truck), half(groceries))
    with torch.inference_mode():
        ref = ex.notebook_steps(reference_image_predictor(size), *images, scale=scale)
    got = ex.notebook_steps(samkit.SAM2ImagePredictor(ours(samkit.build_sam2, size)), *images, scale=scale)
    assert got.keys() == ref.keys()
    assert got["embedding"] == ref["embedding"]

    def arrays(step: dict, field: str) -> list:
        value = step.get(field, [])
        return value if isinstance(value, list) else [value]

    for name in ref:
        r, o = ref[name], got[name]
        for field in ("scores", "logits"):
            for i, (a, b) in enumerate(zip(arrays(o, field), arrays(r, field), strict=True)):
                assert_close(a, b, f"{name}: {field} {i}")
        for field in ("masks", "best_masks"):
            for i, (a, b) in enumerate(zip(arrays(o, field), arrays(r, field), strict=True)):
                assert_masks_agree(a, b, f"{name}: {field} {i}")
    assert 0.0 < ref["one click"]["masks"].mean() < 1.0


@pytest.mark.parity
def test_image_predictor_notebook_matches_reference(truck, groceries):
    _image_notebook(truck, groceries, size=SIZE, scale=0.5)


@pytest.mark.parity
@pytest.mark.slow
def test_image_predictor_notebook_full_size(truck, groceries):
    _image_notebook(truck, groceries, size=1024, scale=1)


def _amg_notebook(groceries, size: int, points: int, tuned_points: int, apply_postprocessing: bool):
    """The notebook's generators on a model built with apply_postprocessing=False. The notebook's
    thresholds keep nothing of untrained weights' scores, so they are lowered (the rest is kept)."""
    ex = example("automatic_mask_generator")
    image = half(groceries)
    kw = dict(
        points_per_side=points,
        tuned_points_per_side=tuned_points,
        default_overrides=dict(pred_iou_thresh=0.4, stability_score_thresh=0.0),
        tuned_overrides=dict(pred_iou_thresh=0.4, stability_score_thresh=0.0),
    )
    ref = ex.notebook_steps(
        reference_model(size, apply_postprocessing=False), reference_generator_class(size), image, **kw
    )
    got = ex.notebook_steps(
        ours(samkit.build_sam2, size, apply_postprocessing=apply_postprocessing),
        samkit.SAM2AutomaticMaskGenerator,
        image,
        **kw,
    )
    return ref, got


@pytest.mark.parity
def test_automatic_mask_generator_notebook_matches_reference(groceries):
    ref, got = _amg_notebook(groceries, size=SIZE, points=4, tuned_points=4, apply_postprocessing=False)
    for name in ("default", "tuned"):
        assert len(ref[name]) > 0, f"{name}: no masks, the comparison would prove nothing"
        assert len(got[name]) == len(ref[name]), name
        for i, (r, o) in enumerate(zip(ref[name], got[name])):
            assert_same_annotation(r, o, f"{name} mask {i}")
    # the switch matters here: with the stability fallback on (samkit's load_model default), the
    # use_m2m refinement (a single-mask decode) keeps another mask than the reference
    _, fallback = _amg_notebook(groceries, size=SIZE, points=4, tuned_points=4, apply_postprocessing=True)
    key = lambda a: (a["point_coords"], a["area"], round(a["predicted_iou"], 4))  # noqa: E731
    assert sorted(map(key, fallback["tuned"])) != sorted(map(key, ref["tuned"]))


@pytest.mark.parity
def test_video_predictor_notebook_matches_reference(data_dir, tmp_path):
    ex = example("video_predictor")
    video = bedroom(data_dir, tmp_path, 4)
    with torch.inference_mode():
        ref = ex.notebook_steps(reference_video_predictor(SIZE), video, refine_frame=2)
    got = ex.notebook_steps(
        ours(samkit.build_sam2_video_predictor, SIZE, progress=False), video, refine_frame=2
    )
    compare_video_steps(ref, got)


@pytest.mark.parity
@pytest.mark.slow
def test_video_predictor_notebook_correction_far_from_the_front(data_dir, tmp_path):
    """All 40 frames, the correction click 19 frames behind the end and 20 after the prompted frame:
    beyond samkit's default memory window (16), so only a predictor that keeps every frame's mask (the
    builder's default, as the reference) starts that click from the frame's previous mask as the
    reference does (with keep_all_outputs=False the click's mask agreed on 66% of the pixels)."""
    ex = example("video_predictor")
    video = bedroom(data_dir, tmp_path, 40)
    with torch.inference_mode():
        ref = ex.notebook_steps(reference_video_predictor(SIZE), video, refine_frame=20)
    got = ex.notebook_steps(
        ours(samkit.build_sam2_video_predictor, SIZE, progress=False), video, refine_frame=20
    )
    compare_video_steps(ref, got)


@pytest.mark.parametrize("name", ["image_predictor", "automatic_mask_generator", "video_predictor"])
def test_example_command_lines(name, data_dir, tmp_path, capsys):
    """Each example's own command line (samkit alone), small: it prints its steps and draws them."""
    ckpt = str(oracle.checkpoint(VARIANT))
    argv = [
        "--checkpoint",
        ckpt,
        "--device",
        "cpu",
        "--image-size",
        str(SIZE),
        "--out",
        str(tmp_path / "out"),
    ]
    if name == "image_predictor":
        argv += ["--images", str(data_dir / "images"), "--scale", "0.5"]
    elif name == "automatic_mask_generator":
        argv += ["--image", str(data_dir / "images" / "groceries.jpg"), "--points-per-side", "4"]
    else:
        argv += ["--video", bedroom(data_dir, tmp_path, 3), "--refine-frame", "1"]
    example(name).main(argv)
    printed = capsys.readouterr().out
    assert "pictures in" in printed
    assert list((tmp_path / "out").glob("*.png"))


# DAVIS-style dataset: two objects on frame 0; for objects appearing later, a third one from frame 2
def _shapes(h: int, w: int) -> dict[int, np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w]
    left_child = ((xx - 0.23 * w) / (0.07 * w)) ** 2 + ((yy - 0.62 * h) / (0.3 * h)) ** 2 <= 1
    right_child = (xx >= 0.33 * w) & (xx < 0.5 * w) & (yy < 0.72 * h)
    lamp = ((xx - 0.75 * w) ** 2 + (yy - 0.3 * h) ** 2) <= (0.06 * h) ** 2
    return {1: left_child, 2: right_child & ~left_child, 3: lamp}


def davis_dataset(data_dir, root: Path, n: int, later: bool, per_obj: bool) -> tuple[str, str]:
    ex = example("vos_inference")
    bedroom(data_dir, root / "JPEGImages", n)
    ann = root / "Annotations" / "bedroom"
    w, h = Image.open(data_dir / "videos" / "bedroom" / "00000.jpg").size
    shapes = _shapes(h, w)
    frames = {0: {1: shapes[1], 2: shapes[2]}}
    if later:
        frames = {0: {1: shapes[1]}, 2: {1: shapes[1], 3: shapes[3]}}
    for f, objs in frames.items():
        if per_obj:
            for obj_id, m in objs.items():
                (ann / f"{obj_id:03d}").mkdir(parents=True, exist_ok=True)
                ex.write_palette_png(
                    str(ann / f"{obj_id:03d}" / f"{f:05d}.png"), m.astype(np.uint8), ex.DAVIS_PALETTE
                )
        else:
            ann.mkdir(parents=True, exist_ok=True)
            ex.write_palette_png(str(ann / f"{f:05d}.png"), ex.merge_objects(objs, h, w), ex.DAVIS_PALETTE)
    return str(root / "JPEGImages"), str(root / "Annotations")


def assert_same_pngs(ref_dir: Path, our_dir: Path) -> int:
    ref_files = sorted(p.relative_to(ref_dir) for p in ref_dir.rglob("*.png"))
    assert ref_files and sorted(p.relative_to(our_dir) for p in our_dir.rglob("*.png")) == ref_files
    for rel in ref_files:
        with Image.open(ref_dir / rel) as r, Image.open(our_dir / rel) as o:
            assert r.mode == o.mode == "P" and r.getpalette() == o.getpalette(), rel
            a, b = np.array(r), np.array(o)
        assert a.shape == b.shape and (a == b).mean() > 0.995, f"{rel}: labels agree on {(a == b).mean():.4%}"
    return len(ref_files)


@pytest.mark.parity
@pytest.mark.parametrize(
    "mode", ["davis", "per_obj_png_file", "track_object_appearing_later_in_video"], ids=lambda m: m
)
def test_vos_inference_matches_reference(mode, data_dir, tmp_path):
    """examples/vos_inference.py's command line with samkit, against its inference functions driving
    the reference predictor as Meta's tool builds it (non_overlap_masks unless per-object PNGs, no
    post-processing)."""
    ex = example("vos_inference")
    per_obj, later = mode == "per_obj_png_file", mode == "track_object_appearing_later_in_video"
    videos, annotations = davis_dataset(data_dir, tmp_path / "data", 4 if not later else 5, later, per_obj)
    argv = ["--sam2_cfg", CONFIG, "--sam2_checkpoint", str(oracle.checkpoint(VARIANT)), "--device", "cpu"]
    argv += [
        "--base_video_dir",
        videos,
        "--input_mask_dir",
        annotations,
        "--output_mask_dir",
        str(tmp_path / "ours"),
    ]
    argv += ["--hydra_override", f"++model.image_size={SIZE}"]
    argv += ["--per_obj_png_file"] * per_obj + ["--track_object_appearing_later_in_video"] * later
    ex.main(argv)

    ref = reference_video_predictor(SIZE, apply_postprocessing=False)
    ref.non_overlap_masks = not per_obj  # what the tool's ++model.non_overlap_masks override sets
    run = ex.vos_separate_inference_per_object if later else ex.vos_inference
    segments = run(ref, videos, annotations, str(tmp_path / "ref"), "bedroom", per_obj_png_file=per_obj)
    n = assert_same_pngs(tmp_path / "ref", tmp_path / "ours")
    assert n == (4 * 2 if per_obj else 4 if not later else 5)
    assert np.mean([m.any() for objs in segments.values() for m in objs.values()]) > 0.5
    if later:  # object 3 enters on frame 2: absent before, tracked after
        assert not any(segments[f][3].any() for f in (0, 1)) and segments[2][3].any()


# --- (b) the builders -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, variant",
    [
        ("configs/sam2.1/sam2.1_hiera_t.yaml", "sam2.1-hiera-tiny"),
        ("configs/sam2.1/sam2.1_hiera_b+.yaml", "sam2.1-hiera-base-plus"),
        ("configs/sam2/sam2_hiera_s.yaml", "sam2-hiera-small"),
        ("sam2_hiera_l.yaml", "sam2-hiera-large"),
        ("sam2.1_hiera_l.yaml", "sam2.1-hiera-large"),
        ("/configs/sam2/sam2_hiera_t", "sam2-hiera-tiny"),
        ("sam2.1-hiera-small", "sam2.1-hiera-small"),
        ("facebook/sam2-hiera-base-plus", "sam2-hiera-base-plus"),
    ],
)
def test_config_names(name, variant):
    assert bs.config_from_name(name).name == variant


@pytest.mark.parametrize(
    "name, match",
    [
        ("configs/sam2/sam2.1_hiera_t.yaml", "lives in configs/sam2.1/"),
        ("configs/sam2.1_training/sam2.1_hiera_b+_MOSE_finetune.yaml", "custom or training configs"),
        ("my_model.yaml", "does not read yaml"),
        ("configs/sam2.1/sam2.1_hiera_x.yaml", "unknown config"),
    ],
)
def test_unknown_config_names_are_refused(name, match):
    with pytest.raises(ValueError, match=match):
        bs.config_from_name(name)


def test_hf_table_matches_the_reference():
    oracle.setup()
    from sam2.build_sam import HF_MODEL_ID_TO_FILENAMES

    assert bs.HF_MODEL_ID_TO_FILENAMES == HF_MODEL_ID_TO_FILENAMES
    for model_id, (config, _) in HF_MODEL_ID_TO_FILENAMES.items():
        assert bs.config_from_name(config).hf_repo == model_id


def _reference_settings(monkeypatch, video: bool, **kwargs) -> dict:
    """What the reference's builder configures, read from its composed config (no model is made)."""
    oracle.setup()
    import sam2.build_sam as ref_bs

    seen = {}

    class Dummy:
        def to(self, device):
            return self

        def eval(self):
            return self

    def capture(cfg, **_):
        seen["model"] = cfg
        return Dummy()

    monkeypatch.setattr(ref_bs, "instantiate", capture)
    builder = ref_bs.build_sam2_video_predictor if video else ref_bs.build_sam2
    builder(CONFIG, None, device="cpu", **kwargs)
    model = seen["model"]
    extra = model.get("sam_mask_decoder_extra_args") or {}
    settings = {
        "dynamic_multimask_via_stability": bool(extra.get("dynamic_multimask_via_stability", False)),
        "image_size": int(model.image_size),
    }
    if not video:
        return settings
    return settings | {
        "fill_hole_area": int(model.get("fill_hole_area", 0)),
        "non_overlap_masks": bool(model.get("non_overlap_masks", False)),
        "binarize_mask_from_pts_for_mem_enc": bool(model.get("binarize_mask_from_pts_for_mem_enc", False)),
        "clear_non_cond_mem_around_input": bool(model.get("clear_non_cond_mem_around_input", False)),
        "add_all_frames_to_correct_as_cond": bool(model.get("add_all_frames_to_correct_as_cond", False)),
    }


def _our_settings(monkeypatch, tiny_model, video: bool, **kwargs) -> dict:
    seen = {}

    def fake_load(cfg, ckpt_path, device, compile, load_kw):
        seen.update(cfg=cfg, compile=compile)
        return tiny_model

    monkeypatch.setattr(bs, "_load", fake_load)
    builder = bs.build_sam2_video_predictor if video else bs.build_sam2
    out = builder(CONFIG, None, device="cpu", **kwargs)
    cfg = seen["cfg"]
    settings = {
        "dynamic_multimask_via_stability": cfg.dynamic_multimask_via_stability,
        "image_size": cfg.image_size,
    }
    if video:
        settings.update({k: getattr(out, k) for k in bs._REFERENCE_VIDEO_DEFAULTS})
    return settings


BUILDER_CASES = [
    dict(),
    dict(apply_postprocessing=False),
    dict(apply_postprocessing=False, hydra_overrides_extra=["++model.non_overlap_masks=true"]),
    dict(apply_postprocessing=True, hydra_overrides_extra=["++model.non_overlap_masks=false"]),
    # the post-processing is applied after the caller's overrides, so it wins
    dict(apply_postprocessing=True, hydra_overrides_extra=["++model.fill_hole_area=0"]),
    dict(
        apply_postprocessing=False,
        hydra_overrides_extra=[
            "++model.fill_hole_area=4",
            "+model.binarize_mask_from_pts_for_mem_enc=true",
            "++model.clear_non_cond_mem_around_input=true",
            "++model.add_all_frames_to_correct_as_cond=true",
            "model.image_size=512",
            "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
        ],
    ),
]


@pytest.mark.parametrize("kwargs", BUILDER_CASES, ids=range(len(BUILDER_CASES)))
def test_video_builder_configures_as_the_reference(kwargs, monkeypatch, tiny_model):
    assert _our_settings(monkeypatch, tiny_model, True, **kwargs) == _reference_settings(
        monkeypatch, True, **kwargs
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(apply_postprocessing=False),
        dict(hydra_overrides_extra=["++model.image_size=512"], apply_postprocessing=False),
    ],
)
def test_image_builder_configures_as_the_reference(kwargs, monkeypatch, tiny_model):
    assert _our_settings(monkeypatch, tiny_model, False, **kwargs) == _reference_settings(
        monkeypatch, False, **kwargs
    )


def test_builders_build_working_models(tiny_checkpoint):
    """Real builds (the small test config, which samkit's builders accept by name)."""
    model = samkit.build_sam2("test-tiny", tiny_checkpoint, device="cpu")
    assert (
        model.cfg.dynamic_multimask_via_stability and model.sam_mask_decoder.dynamic_multimask_via_stability
    )
    model = samkit.build_sam2("test-tiny", tiny_checkpoint, device="cpu", apply_postprocessing=False)
    assert not model.sam_mask_decoder.dynamic_multimask_via_stability
    assert not samkit.load_model(
        "test-tiny", tiny_checkpoint, device="cpu", apply_postprocessing=False
    ).cfg.dynamic_multimask_via_stability
    random = samkit.build_sam2("test-tiny", None, device="cpu")  # the reference leaves random weights
    assert isinstance(random, samkit.SAM2Model) and not random.training
    pred = samkit.build_sam2_video_predictor(
        "test-tiny", tiny_checkpoint, device="cpu", hydra_overrides_extra=["++model.non_overlap_masks=true"]
    )
    assert isinstance(pred, samkit.VideoPredictor) and pred.non_overlap_masks and pred.keep_all_outputs
    assert (pred.fill_hole_area, pred.binarize_mask_from_pts_for_mem_enc) == (8, True)
    pred = samkit.build_sam2_video_predictor(
        "test-tiny",
        tiny_checkpoint,
        device="cpu",
        apply_postprocessing=False,
        keep_all_outputs=False,
        progress=False,
    )
    assert (pred.fill_hole_area, pred.binarize_mask_from_pts_for_mem_enc, pred.keep_all_outputs) == (
        0,
        False,
        False,
    )
    assert not pred.model.sam_mask_decoder.dynamic_multimask_via_stability


@pytest.mark.parametrize(
    "override",
    [
        "++model.num_maskmem=3",
        "++model._target_=sam2.sam2_video_predictor.SAM2VideoPredictorVOS",
        "trainer.max_epochs=1",
        "++model.fill_hole_area",
    ],
)
def test_unsupported_overrides_are_refused(override, tiny_checkpoint):
    with pytest.raises(ValueError, match="unsupported hydra override") as e:
        samkit.build_sam2_video_predictor(
            "test-tiny", tiny_checkpoint, device="cpu", hydra_overrides_extra=[override]
        )
    assert override in str(e.value) and "++model.non_overlap_masks" in str(e.value)


def test_bad_override_values_and_video_only_overrides(tiny_checkpoint):
    with pytest.raises(ValueError, match="expected true or false"):
        samkit.build_sam2_video_predictor(
            "test-tiny",
            tiny_checkpoint,
            device="cpu",
            hydra_overrides_extra=["++model.non_overlap_masks=maybe"],
        )
    with pytest.raises(ValueError, match="pass it to build_sam2_video_predictor"):
        samkit.build_sam2(
            "test-tiny", tiny_checkpoint, device="cpu", hydra_overrides_extra=["++model.fill_hole_area=8"]
        )
    with pytest.raises(ValueError, match="mode must be 'eval'"):
        samkit.build_sam2("test-tiny", tiny_checkpoint, device="cpu", mode="train")
    with pytest.warns(
        UserWarning, match=r"ignores the keyword argument\(s\) non_overlap_masks.*hydra_overrides_extra"
    ):
        pred = samkit.build_sam2_video_predictor(
            "test-tiny", tiny_checkpoint, device="cpu", non_overlap_masks=True
        )
    assert not pred.non_overlap_masks  # ignored, as the reference's builder ignores it


def test_vos_optimized_is_the_compiled_path(monkeypatch, tiny_model):
    calls = []
    monkeypatch.setattr(bs, "load_model", lambda cfg, **kw: calls.append(kw) or tiny_model)
    bs.build_sam2_video_predictor(CONFIG, "ckpt.pt", device="cpu", vos_optimized=True)
    bs.build_sam2_video_predictor(CONFIG, "ckpt.pt", device="cpu")
    bs.build_sam2(
        CONFIG, "ckpt.pt", device="cpu", hydra_overrides_extra=["++model.compile_image_encoder=true"]
    )
    assert [c["compile"] for c in calls] == [True, False, True]
    assert calls[0]["checkpoint"] == "ckpt.pt" and calls[0]["device"] == "cpu"


def test_hf_builders_download_the_official_weights(monkeypatch, tiny_model):
    loads, downloads = [], []
    monkeypatch.setattr(bs, "download_checkpoint", lambda name: downloads.append(name) or Path("/hub/x.pt"))
    monkeypatch.setattr(bs, "load_model", lambda cfg, **kw: loads.append((cfg.name, kw)) or tiny_model)
    bs.build_sam2_hf("facebook/sam2.1-hiera-large", device="cpu", apply_postprocessing=False)
    pred = bs.build_sam2_video_predictor_hf("facebook/sam2-hiera-tiny", device="cpu")
    assert downloads == ["sam2.1-hiera-large", "sam2-hiera-tiny"]
    assert [n for n, _ in loads] == ["sam2.1-hiera-large", "sam2-hiera-tiny"]
    assert loads[0][1]["checkpoint"] == "/hub/x.pt" and isinstance(pred, samkit.VideoPredictor)
    with pytest.raises(ValueError, match="unknown model id"):
        bs.build_sam2_hf("facebook/sam3")


def test_reference_names_are_importable():
    from samkit.build_sam import build_sam2, build_sam2_video_predictor

    assert build_sam2 is samkit.build_sam2 and build_sam2_video_predictor is samkit.build_sam2_video_predictor
    assert samkit.SAM2ImagePredictor is samkit.ImagePredictor
    assert samkit.SAM2AutomaticMaskGenerator is samkit.AutomaticMaskGenerator
    assert samkit.SAM2VideoPredictor is samkit.VideoPredictor


# --- (c) the reference's private methods that Meta's tools call ----------------------------------


def test_apply_non_overlapping_constraints_matches_reference(tiny_model):
    oracle.setup()
    from sam2.modeling.sam2_base import SAM2Base

    pred = samkit.VideoPredictor(tiny_model, progress=False)
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(3, 1, 40, 50, generator=g) * 20
    scores[:, :, :5] = -1024.0  # vos_inference's fill value for objects without output on a frame
    expected = SAM2Base._apply_non_overlapping_constraints(None, scores.clone())
    torch.testing.assert_close(
        pred._apply_non_overlapping_constraints(scores.clone()), expected, rtol=0, atol=0
    )
    one = scores[:1].clone()
    assert torch.equal(pred._apply_non_overlapping_constraints(one), one)
