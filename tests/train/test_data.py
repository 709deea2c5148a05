"""samkit.train.data: readers, clip sampling, skip_bad, the mixed dataset, specs and splits.

All data is drawn here, tiny (64 px), with AugmentSettings.none at the data's own size where a
test compares masks, so the expected mask is exactly what was drawn."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from samkit.train.augment import AugmentSettings
from samkit.train.batch import Batch, Sample
from samkit.train.data import (
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

S = 64
NONE = AugmentSettings.none(S)

# --- helpers -------------------------------------------------------------------------------------


def rgb(h: int = S, w: int = S, level: int = 90, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(level + rng.integers(-20, 20, (h, w, 3)), 0, 255).astype(np.uint8)


def save(arr: np.ndarray, path: Path, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(arr, mode) if mode else Image.fromarray(arr)
    im.save(path)
    return path


def save_palette(labels: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(labels.astype(np.uint8), "P")
    im.putpalette([0, 0, 0, 200, 0, 0, 0, 200, 0, 0, 0, 200] + [128] * (252 * 3))
    im.save(path)
    return path


def rect(y0: int, y1: int, x0: int, x1: int, h: int = S, w: int = S) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def rle(mask: np.ndarray, compressed: bool = True) -> dict:
    from pycocotools import mask as mask_utils

    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    if compressed:
        return {"size": [int(v) for v in r["size"]], "counts": r["counts"].decode()}
    flat = mask.astype(np.uint8).ravel(order="F")
    counts, current, run = [], 0, 0
    for v in flat:
        if v != current:
            counts.append(run)
            current, run = v, 0
        run += 1
    counts.append(run)
    return {"size": list(mask.shape), "counts": counts}


# --- COCO ----------------------------------------------------------------------------------------

SQUARE_POLY = [10, 10, 30, 10, 30, 30, 10, 30]
BLOB = rect(40, 55, 5, 20) | rect(45, 60, 15, 35)
BAR = rect(5, 12, 35, 60)


@pytest.fixture
def coco(tmp_path) -> tuple[Path, Path]:
    images = tmp_path / "images"
    for k in range(4):
        save(rgb(level=40 + 40 * k, seed=k), images / f"im{k}.jpg")
    anns = [
        {"id": 1, "image_id": 0, "category_id": 1, "segmentation": [SQUARE_POLY], "iscrowd": 0},
        {"id": 2, "image_id": 0, "category_id": 2, "segmentation": rle(BLOB), "iscrowd": 0},
        {"id": 3, "image_id": 1, "category_id": 2, "segmentation": rle(BAR, compressed=False), "iscrowd": 0},
        {"id": 4, "image_id": 1, "category_id": 1, "segmentation": rle(rect(0, 64, 0, 64)), "iscrowd": 1},
        # image 2: only a crowd region; image 3: nothing
        {"id": 5, "image_id": 2, "category_id": 1, "segmentation": rle(rect(0, 9, 0, 9)), "iscrowd": 1},
    ]
    data = {
        "images": [{"id": k, "file_name": f"im{k}.jpg", "height": S, "width": S} for k in range(4)],
        "annotations": anns,
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return path, images


def masks_by_id(sample: Sample | RawSample, frame: int = 0) -> dict[int, np.ndarray]:
    return {oid: sample.masks[frame, o].numpy() for o, oid in enumerate(sample.object_ids)}


def test_coco_reads_polygons_and_both_rles(coco):
    path, images = coco
    ds = CocoImages(path, images, max_objects=5, augment=NONE)
    assert len(ds) == 2 and ds.num_unannotated == 2 and ds.num_crowd == 2
    s0 = ds[0]
    assert isinstance(s0, Sample) and s0.frames.shape == (1, 3, S, S) and s0.frames.dtype == torch.float32
    assert s0.name == "im0.jpg" and sorted(s0.object_ids) == [1, 2]
    m = masks_by_id(s0)
    assert np.array_equal(m[2], BLOB)  # compressed RLE, exactly
    square = rect(10, 30, 10, 30)
    assert (m[1] & square).sum() / (m[1] | square).sum() > 0.85  # the rasterized polygon
    s1 = ds[1]
    assert s1.object_ids == [3]  # the crowd annotation is not an object
    assert np.array_equal(masks_by_id(s1)[3], BAR)  # uncompressed RLE


def test_coco_max_objects_samples_with_the_item_generator(tmp_path):
    images = tmp_path / "images"
    save(rgb(), images / "a.jpg")
    anns = [
        {"id": 10 + k, "image_id": 1, "category_id": 1, "segmentation": rle(rect(2 * k, 2 * k + 3, 0, 20))}
        for k in range(8)
    ]
    data = {"images": [{"id": 1, "file_name": "a.jpg", "height": S, "width": S}], "annotations": anns}
    (tmp_path / "a.json").write_text(json.dumps(data))
    ds = CocoImages(tmp_path / "a.json", images, max_objects=3, augment=NONE, seed=1)
    chosen = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        first, again = ds[0], ds[0]
        assert first.object_ids == again.object_ids and len(first.object_ids) == 3
        for oid, m in masks_by_id(first).items():
            k = oid - 10
            assert np.array_equal(m, rect(2 * k, 2 * k + 3, 0, 20))
        chosen.add(tuple(first.object_ids))
    assert len(chosen) > 1


def test_coco_categories(coco):
    path, images = coco
    ds = CocoImages(path, images, categories=["dog"], augment=NONE)
    assert [sorted(ds[i].object_ids) for i in range(len(ds))] == [[2], [3]]
    ds = CocoImages(path, images, categories=["cat"], augment=NONE)
    assert len(ds) == 1 and ds[0].object_ids == [1]
    with pytest.raises(DataError, match=r"unknown category 'zebra'.*cat, dog"):
        CocoImages(path, images, categories=["zebra"])


def test_coco_errors_name_the_file(coco, tmp_path):
    path, images = coco
    (images / "im0.jpg").unlink()
    ds = CocoImages(path, images, augment=NONE)
    with pytest.raises(DataError, match="im0.jpg"):
        ds[0]
    data = json.loads(path.read_text())
    data["annotations"][2]["segmentation"] = rle(rect(0, 5, 0, 5, h=32, w=32))
    bad = tmp_path / "bad_size.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"annotation 3 .*im1.jpg.*RLE size"):
        CocoImages(bad, images, augment=NONE)[1]
    data["annotations"][2]["segmentation"] = []
    bad.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"bad_size.json: annotation 3 .*empty segmentation"):
        CocoImages(bad, images)
    (tmp_path / "broken.json").write_text('{"images": [\n  {"id": 1,,}]}')
    with pytest.raises(DataError, match=r"broken.json: invalid JSON at line 2"):
        CocoImages(tmp_path / "broken.json", images)
    (tmp_path / "empty.json").write_text(json.dumps({"images": data["images"], "annotations": []}))
    with pytest.raises(DataError, match="empty.json: no usable annotations"):
        CocoImages(tmp_path / "empty.json", images)
    # the JSON says 64x64, the file is 32x48
    save(rgb(32, 48), images / "im1.jpg")
    with pytest.raises(DataError, match=r"im1.jpg is 48x32 but .* says 64x64"):
        CocoImages(path, images, augment=NONE)[1]


def test_coco_skip_bad(coco):
    path, images = coco
    (images / "im0.jpg").unlink()
    ds = CocoImages(path, images, augment=NONE, skip_bad=True)
    sample = ds[0]  # im0 is missing: the next valid image takes its place
    assert sample.name == "im1.jpg"
    assert len(ds.skipped) == 1 and "im0.jpg" in ds.skipped[0]
    ds[0]
    assert len(ds.skipped) == 1  # each problem listed once


# --- mask folders --------------------------------------------------------------------------------


def test_mask_folder_instance_binary_and_per_object(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    save(rgb(), images / "a.png")
    labels = np.zeros((S, S), np.uint8)
    labels[rect(5, 20, 5, 20)] = 1
    labels[rect(30, 50, 10, 40)] = 2
    save_palette(labels, masks / "a.png")
    save(rgb(level=120), images / "b.jpg")
    save(rect(10, 50, 20, 30).astype(np.uint8) * 255, masks / "b.png")  # binary, grayscale
    save(rgb(level=160), images / "c.jpg")
    save(rect(0, 10, 0, 10).astype(np.uint8) * 255, masks / "c" / "0.png")
    save(rect(40, 60, 40, 60).astype(np.uint8), masks / "c" / "1.png")
    save(np.zeros((S, S), np.uint8), masks / "c" / "2.png")  # empty: ignored
    save(rgb(level=200), images / "d.jpg")  # no mask
    gray = np.zeros((S, S), np.uint16)
    gray[rect(1, 9, 1, 9)] = 300  # 16-bit instance ids
    gray[rect(20, 29, 1, 9)] = 7
    save(rgb(level=60), images / "e.png")
    Image.fromarray(gray).save(masks / "e.png")  # mode I;16

    ds = MaskFolderImages(images, masks, max_objects=5, augment=NONE)
    assert len(ds) == 4 and ds.num_unannotated == 1
    by_name = {ds[i].name: ds[i] for i in range(len(ds))}
    assert sorted(by_name) == ["a.png", "b.jpg", "c.jpg", "e.png"]
    a = masks_by_id(by_name["a.png"])
    assert sorted(a) == [1, 2] and np.array_equal(a[1], labels == 1) and np.array_equal(a[2], labels == 2)
    b = masks_by_id(by_name["b.jpg"])
    assert list(b) == [1] and np.array_equal(b[1], rect(10, 50, 20, 30))
    c = masks_by_id(by_name["c.jpg"])
    assert sorted(c) == [0, 1] and np.array_equal(c[0], rect(0, 10, 0, 10))
    assert np.array_equal(c[1], rect(40, 60, 40, 60))
    e = masks_by_id(by_name["e.png"])
    assert sorted(e) == [7, 300] and np.array_equal(e[300], rect(1, 9, 1, 9))


def test_mask_folder_errors(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    save(rgb(), images / "a.jpg")
    save(rect(0, 5, 0, 5, h=32, w=32).astype(np.uint8), masks / "a.png")
    with pytest.raises(DataError, match=r"mask .*a.png is 32x32 but its image .*a.jpg is 64x64"):
        MaskFolderImages(images, masks, augment=NONE)[0]
    save(np.zeros((S, S), np.uint8), masks / "a.png")
    with pytest.raises(DataError, match=r"a.png is empty"):
        MaskFolderImages(images, masks, augment=NONE)[0]
    with pytest.raises(DataError, match="mask folder not found"):
        MaskFolderImages(images, tmp_path / "nowhere")
    with pytest.raises(DataError, match="has a mask"):
        MaskFolderImages(masks, images)  # no image in masks/ has a mask in images/


# --- DAVIS-style videos --------------------------------------------------------------------------


def frame_level(k: int) -> int:
    return 20 + 15 * k


def davis_labels(k: int) -> np.ndarray:
    """Object 1 in every frame, object 2 from frame 5 on, object 3 only in frames 2 and 3."""
    labels = np.zeros((S, S), np.uint8)
    labels[rect(4 + k, 14 + k, 4, 14)] = 1
    if k >= 5:
        labels[rect(30, 40, 20 + k, 30 + k)] = 2
    if k in (2, 3):
        labels[rect(50, 60, 50, 60)] = 3
    return labels


def make_video(root: Path, name: str, n: int, labels=davis_labels, skip_png=()) -> None:
    for k in range(n):
        save(np.full((S, S, 3), frame_level(k), np.uint8), root / "JPEGImages" / name / f"{k:05d}.jpg")
        if k not in skip_png:
            save_palette(labels(k), root / "Annotations" / name / f"{k:05d}.png")


def window_of(sample: Sample) -> list[int]:
    """The frame numbers of a sample, from the gray level each frame was drawn with."""
    levels = (sample.frames * torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)) + torch.tensor(
        [0.485, 0.456, 0.406]
    ).view(1, 3, 1, 1)
    means = (levels.mean(dim=(1, 2, 3)) * 255).tolist()
    return [round((m - 20) / 15) for m in means]


def test_davis_windows_and_visible_objects(tmp_path):
    make_video(tmp_path, "v1", 10)
    ds = DavisVideos(
        tmp_path / "JPEGImages", tmp_path / "Annotations", num_frames=3, max_objects=3, augment=NONE
    )
    assert len(ds) == 1 and ds.num_frames == 3
    starts = set()
    for epoch in range(12):
        ds.set_epoch(epoch)
        s = ds[0]
        assert s.frames.shape == (3, 3, S, S) and s.masks.shape[:2] == (3, len(s.object_ids))
        frames = window_of(s)
        start = frames[0]
        assert frames == [start, start + 1, start + 2]
        starts.add(start)
        visible_first = set(np.unique(davis_labels(start))) - {0}
        assert set(s.object_ids) == visible_first  # all visible ones (<= max_objects), no others
        for t, k in enumerate(frames):
            for oid, m in masks_by_id(s, t).items():
                assert np.array_equal(m, davis_labels(k) == oid)
    assert len(starts) > 3


def test_davis_max_objects_and_reverse(tmp_path):
    make_video(tmp_path, "v1", 10)
    ds = DavisVideos(
        tmp_path / "JPEGImages",
        tmp_path / "Annotations",
        num_frames=4,
        max_objects=1,
        reverse_prob=1.0,
        augment=NONE,
    )
    for epoch in range(5):
        ds.set_epoch(epoch)
        s = ds[0]
        frames = window_of(s)
        assert frames == sorted(frames, reverse=True) and frames[0] - frames[-1] == 3
        assert len(s.object_ids) == 1 and s.masks[0, 0].any()


def test_davis_first_frame_must_show_an_object(tmp_path):
    make_video(tmp_path, "empty", 5, labels=lambda k: np.zeros((S, S), np.uint8))
    make_video(tmp_path, "late", 6, labels=lambda k: davis_labels(5) * (k == 5))
    ds = DavisVideos(tmp_path / "JPEGImages", tmp_path / "Annotations", num_frames=2, augment=NONE)
    with pytest.raises(DataError, match="video empty: no object visible in the first frame"):
        ds[0]
    # "late" shows its object only in its last frame, which no 2-frame window starts with: also an
    # error; with skip_bad both videos are listed and nothing loads
    ds = DavisVideos(
        tmp_path / "JPEGImages", tmp_path / "Annotations", num_frames=2, augment=NONE, skip_bad=True
    )
    with pytest.raises(DataError, match="none of the 2 items"):
        ds[0]
    assert len(ds.skipped) == 2 and any("video late" in m for m in ds.skipped)


def test_davis_gaps_and_short_videos(tmp_path):
    make_video(tmp_path, "good", 6)
    make_video(tmp_path, "gap", 6, skip_png=(3,))
    make_video(tmp_path, "short", 2)
    jpeg, ann = tmp_path / "JPEGImages", tmp_path / "Annotations"
    with pytest.raises(
        DataError, match=r"video gap: annotation missing for frame 00003.jpg: .*gap/00003.png"
    ):
        DavisVideos(jpeg, ann, num_frames=3, file_list=["gap"])
    with pytest.raises(DataError, match=r"video short: 2 annotated frames, fewer than num_frames=3"):
        DavisVideos(jpeg, ann, num_frames=3, file_list=["short"])
    ds = DavisVideos(jpeg, ann, num_frames=3, skip_bad=True, augment=NONE)
    assert [v.name for v in ds.videos] == ["good"]
    assert len(ds.skipped) == 2
    assert any("gap" in m and "00003.png" in m for m in ds.skipped)
    assert any("short" in m for m in ds.skipped)
    # a file list (text file, one name a line)
    (tmp_path / "list.txt").write_text("good\n")
    assert len(DavisVideos(jpeg, ann, num_frames=3, file_list=tmp_path / "list.txt")) == 1


def test_davis_sparse_regular_annotations(tmp_path):
    # every other frame annotated (regular): the clip is made of annotated frames only
    make_video(tmp_path, "sparse", 9, skip_png=(1, 3, 5, 7))
    ds = DavisVideos(tmp_path / "JPEGImages", tmp_path / "Annotations", num_frames=3, augment=NONE)
    assert len(ds.videos[0].frames) == 5
    frames = window_of(ds[0])
    assert frames[1] - frames[0] == 2 and frames[2] - frames[1] == 2


# --- SA-V ----------------------------------------------------------------------------------------


def sav_mask(entry: int, obj: int) -> np.ndarray:
    if obj == 0:
        return rect(5 + entry, 20 + entry, 10, 30, h=48, w=64)
    if entry == 0:
        return np.zeros((48, 64), bool)  # object 1 is absent from the first annotated frame
    return rect(30, 44, 30 + 5 * entry, 50 + 5 * entry, h=48, w=64)


@pytest.fixture(scope="module")
def sav_root(tmp_path_factory) -> Path:
    from videogen import write_mp4

    root = tmp_path_factory.mktemp("sav")
    frames = [np.full((48, 64, 3), frame_level(k), np.uint8) for k in range(12)]
    write_mp4(root / "sav_000001.mp4", frames, fps=24)
    data = {
        "video_id": "sav_000001",
        "video_frame_count": 12,
        "video_height": 48,
        "video_width": 64,
        "masklet": [[rle(sav_mask(e, j)) for j in range(2)] for e in range(3)],  # frames 0, 4, 8
        "masklet_id": [0, 1],
        "masklet_num": 2,
    }
    (root / "sav_000001_manual.json").write_text(json.dumps(data))
    write_mp4(root / "sav_000002.mp4", frames[:4], fps=24)  # no annotations: left out
    return root


def test_sav_reads_the_annotated_frames(sav_root):
    ds = SavVideos(sav_root, num_frames=2, max_objects=3, augment=NONE)
    assert len(ds) == 1 and ds.num_unannotated == 1
    seen = set()
    for epoch in range(8):
        ds.set_epoch(epoch)
        raw = ds.load(0, ds.generator(0))
        assert raw.frames.shape == (2, 3, 48, 64) and raw.frames.dtype == torch.uint8
        levels = raw.frames.float().mean(dim=(1, 2, 3)).tolist()
        first = round((levels[0] - 20) / 15)
        assert first in (0, 4)  # windows over the annotated frames 0, 4, 8
        assert abs(levels[1] - frame_level(first + 4)) < 4
        entry = first // 4
        seen.add(entry)
        # object 1 is not visible in entry 0, so it is chosen only in windows starting at entry 1
        assert raw.object_ids == ([0] if entry == 0 else [0, 1])
        for t in range(2):
            for o, oid in enumerate(raw.object_ids):
                assert np.array_equal(raw.masks[t, o].numpy(), sav_mask(entry + t, oid))
        s = ds[0]
        assert s.frames.shape == (2, 3, S, S) and s.name == "sav_000001"
    assert seen == {0, 1}


def test_sav_errors(sav_root, tmp_path):
    ds = SavVideos(sav_root, num_frames=4, augment=NONE)
    with pytest.raises(DataError, match=r"sav_000001.mp4: 3 annotated frames .* fewer than num_frames=4"):
        ds[0]
    data = json.loads((sav_root / "sav_000001_manual.json").read_text())
    data["masklet"].append([rle(sav_mask(1, 0)), rle(sav_mask(1, 1))])  # entry 3 = frame 12: past the end
    root = tmp_path / "sav"
    root.mkdir()
    (root / "v.mp4").write_bytes((sav_root / "sav_000001.mp4").read_bytes())
    (root / "v_manual.json").write_text(json.dumps(data))
    ds = SavVideos(root, num_frames=4, augment=NONE)
    with pytest.raises(DataError, match=r"v.mp4 has 12 frames, but v_manual.json annotates frame 12"):
        ds[0]
    with pytest.raises(DataError, match="SA-V folder not found"):
        SavVideos(tmp_path / "nowhere")


# --- the base class, mixing, specs, splits -------------------------------------------------------


class Toy(TrainDataset):
    """In-memory items; load(index) without a generator, as a user subclass may write it."""

    def __init__(self, n: int, t: int = 1, bad=(), **kw) -> None:
        super().__init__(**kw)
        self.n, self.num_frames, self.bad = n, t, set(bad)

    def __len__(self) -> int:
        return self.n

    def load(self, index: int) -> RawSample:
        if index in self.bad:
            raise DataError(f"item{index}.png: broken")
        frames = torch.full((self.num_frames, 3, 16, 16), 10 * index % 250, dtype=torch.uint8)
        frames[:, 0, :4, :8] = 255
        masks = torch.zeros(self.num_frames, 1, 16, 16, dtype=torch.bool)
        masks[:, 0, 4:12, 4:12] = True
        return RawSample(frames, masks, [index], f"item{index}")


def test_set_epoch_reproducibility():
    ds = Toy(6, t=2, augment=AugmentSettings(size=32), seed=3)
    a1, b1 = ds[4], ds[1]
    b2, a2 = ds[1], ds[4]  # the order of access does not matter
    assert torch.equal(a1.frames, a2.frames) and torch.equal(b1.frames, b2.frames)
    other_seed = Toy(6, t=2, augment=AugmentSettings(size=32), seed=4)
    assert not torch.equal(other_seed[4].frames, a1.frames)
    ds.set_epoch(1)
    e1 = ds[4]
    assert not torch.equal(e1.frames, a1.frames)
    ds.set_epoch(0)
    assert torch.equal(ds[4].frames, a1.frames)


def test_skip_bad_in_a_subclass():
    ds = Toy(4, bad=(1, 2), augment=NONE)
    with pytest.raises(DataError, match="item1.png"):
        ds[1]
    ds = Toy(4, bad=(1, 2), augment=NONE, skip_bad=True)
    assert ds[1].name == "item3"
    assert ds.skipped == ["item1.png: broken", "item2.png: broken"]


def test_mixed_dataset_batches_each_source_on_its_own():
    images, videos = (
        Toy(10, t=1, augment=AugmentSettings.none(16)),
        Toy(7, t=3, augment=AugmentSettings.none(16)),
    )
    mixed = MixedDataset([(images, 4), (videos, 2)], seed=0)
    assert len(mixed) == 10 // 4 + 7 // 2
    kinds = []
    for k in range(len(mixed)):
        batch = mixed[k]
        assert isinstance(batch, Batch)
        src, items = mixed.batches()[k]
        kinds.append(src)
        expected_t, expected_b = (1, 4) if src == 0 else (3, 2)
        assert batch.img_batch.shape[:2] == (expected_t, expected_b)
        assert batch.names == [f"item{i}" for i in items]
    assert sorted(kinds) == [0, 0, 1, 1, 1]
    # deterministic for (seed, epoch); another epoch, another order
    again = MixedDataset([(images, 4), (videos, 2)], seed=0)
    assert again.batches() == mixed.batches()
    plans = set()
    for epoch in range(4):
        mixed.set_epoch(epoch)
        plans.add(repr(mixed.batches()))
    assert len(plans) > 1 and images.epoch == 3 and videos.epoch == 3


def test_mixed_dataset_rank_sharding():
    images, videos = Toy(21, t=1, augment=NONE), Toy(9, t=2, augment=NONE)
    pairs = [(images, 2), (videos, 2)]
    ranks = [MixedDataset(pairs, seed=5, rank=r, world_size=3) for r in range(3)]
    lengths = {len(m) for m in ranks}
    assert lengths == {21 // 6 + 9 // 6}  # groups of world_size batches; incomplete ones dropped
    seen: dict[int, set] = {0: set(), 1: set()}
    for step in range(len(ranks[0])):
        sources = {m.batches()[step][0] for m in ranks}
        assert len(sources) == 1  # all ranks on the same dataset at each step
        for m in ranks:
            src, items = m.batches()[step]
            assert not seen[src] & set(items)
            seen[src] |= set(items)
    with pytest.raises(ValueError, match="rank"):
        MixedDataset(pairs, rank=3, world_size=3)


def test_split_is_deterministic_and_disjoint():
    ds = Toy(20, t=2, augment=AugmentSettings(size=32))
    train, val = split(ds, 0.25, seed=1)
    train2, val2 = split(ds, 0.25, seed=1)
    assert len(val) == 5 and len(train) == 15
    assert val.indices == val2.indices and train.indices == train2.indices
    assert sorted(train.indices + val.indices) == list(range(20))
    assert split(ds, 0.25, seed=2)[1].indices != val.indices
    assert val.augment == AugmentSettings.none(32) and train.augment == ds.augment
    assert val[0].name == f"item{val.indices[0]}" and val.num_frames == 2
    with pytest.raises(ValueError, match="val_fraction"):
        split(ds, 1.0)


def test_parse_data_spec(coco, tmp_path, sav_root):
    path, images = coco
    ds = parse_data_spec(f"coco:{path}:{images}", augment=NONE, num_frames=8, max_objects=1)
    assert isinstance(ds, CocoImages) and ds.max_objects == 1
    make_video(tmp_path, "v1", 4)
    ds = parse_data_spec(f"davis:{tmp_path / 'JPEGImages'}:{tmp_path / 'Annotations'}", num_frames=2)
    assert isinstance(ds, DavisVideos) and ds.num_frames == 2
    save(rgb(), tmp_path / "imgs" / "a.jpg")
    save(rect(0, 5, 0, 5).astype(np.uint8), tmp_path / "msks" / "a.png")
    assert isinstance(parse_data_spec(f"folder:{tmp_path / 'imgs'}:{tmp_path / 'msks'}"), MaskFolderImages)
    assert isinstance(parse_data_spec(f"sav:{sav_root}", num_frames=2), SavVideos)
    for bad in ("coco:only_one_path", "cocoa:a:b", "sav", "davis:a:b:c", "", "folder::x"):
        with pytest.raises(
            ValueError, match=r"expected one of coco:ANNOTATIONS.json:IMAGE_DIR, folder:"
        ) as e:
            parse_data_spec(bad)
        assert "\n" not in str(e.value)
    with pytest.raises(DataError, match=r"coco: annotations file not found: .*missing.json"):
        parse_data_spec(f"coco:{tmp_path / 'missing.json'}:{images}")
    with pytest.raises(DataError, match=r"davis: annotation folder not found: .*nope"):
        parse_data_spec(f"davis:{tmp_path / 'JPEGImages'}:{tmp_path / 'nope'}")
    with pytest.raises(TypeError, match="frames_per_second"):
        parse_data_spec(f"sav:{sav_root}", frames_per_second=3)
