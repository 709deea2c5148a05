"""samkit.heads: the prompt-free head's shapes and freezing, save/load, the embedding cache, training
(loss falls, resumes) and its errors, on the tiny model and generated shapes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from samkit import ImagePredictor
from samkit.heads import (
    ClassImages,
    EmbeddingCache,
    HeadError,
    HeadSettings,
    PromptFreeHead,
    head_loss,
    train_head,
)
from samkit.heads.model import head_annotations
from samkit.heads.train import class_ious


@pytest.fixture(scope="module")
def coco_shapes(tmp_path_factory):
    from samkit.train.synthetic import write_coco_shapes

    ann, images = write_coco_shapes(12, tmp_path_factory.mktemp("shapes"), size=96, seed=1)
    return f"coco:{ann}:{images}"


def _features(model, n=2, size=128):
    x = torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return model.encode_images(x)


@pytest.mark.parametrize("kind", ["tokens", "dense"])
def test_head_shapes_and_trainable_parts(tiny_model, kind):
    head = PromptFreeHead.from_model(tiny_model, ["disc", "rect"], kind)
    embed, high = _features(tiny_model)
    logits = head(embed, high)
    g = tiny_model.cfg.image_size // 4
    assert logits.shape == (2, 3, g, g)
    trainable = {n for n, p in head.named_parameters() if p.requires_grad}
    if kind == "tokens":
        assert "class_tokens" in trainable and any(n.startswith("decoder.transformer") for n in trainable)
    else:
        assert trainable and all(n.startswith("prompt_net") for n in trainable)
    # the head is a copy: training it never touches the model's own decoder
    assert all(p.data_ptr() != q.data_ptr() for p in head.parameters() for q in tiny_model.parameters())
    # the dense head starts as SAM with no prompt: its first class is SAM's single mask
    if kind == "dense":
        dec = tiny_model.sam_mask_decoder
        pe = tiny_model.sam_prompt_encoder
        dense = pe.no_mask_embed.weight.reshape(1, -1, 1, 1).expand_as(embed)
        with torch.no_grad():
            ref, *_ = dec.predict_masks(
                embed, pe.get_dense_pe(), embed.new_zeros(2, 0, embed.shape[1]), dense, False, high
            )
            torch.testing.assert_close(head(embed, high)[:, 1], ref[:, 0], atol=1e-4, rtol=1e-4)


def test_loss_and_ious_on_hand_made_maps():
    target = torch.zeros(1, 8, 8, dtype=torch.uint8)
    target[0, :4] = 1
    perfect = torch.full((1, 2, 8, 8), -20.0)
    perfect[:, 1][target.bool()] = 20.0
    perfect[:, 0][~target.bool()] = 20.0
    assert float(head_loss(perfect, target)) < 1e-3
    assert float(head_loss(-perfect, target)) > 10
    pred = torch.zeros(8, 8, dtype=torch.uint8)
    pred[:2] = 1
    assert class_ious(pred, target[0], 2) == [0.5, None]


def test_save_load_round_trip_and_errors(tiny_model, tmp_path):
    head = PromptFreeHead.from_model(tiny_model, ["tree"], checkpoint_sha256="ab" * 32)
    with torch.no_grad():
        head.class_tokens.add_(1.0)  # something a fresh head would not have
    path = head.save(tmp_path / "tree-head.pt")
    back = PromptFreeHead.load(path)
    assert back.classes == ["tree"] and back.variant == "test-tiny" and back.checkpoint_sha256 == "ab" * 32
    embed, high = _features(tiny_model)
    with torch.no_grad():
        torch.testing.assert_close(back(embed, high), head(embed, high))
    back.check_model(tiny_model)
    info = PromptFreeHead.read_info(path)  # without building the head
    assert info == {**back.describe(), "image_size": 128} and info["classes"] == ["tree"]
    assert back.class_index("tree") == 0
    with pytest.raises(HeadError, match="no class 'car'; its classes: tree"):
        back.class_index("car")
    import dataclasses

    from samkit.checkpoints import build_model

    other = build_model(dataclasses.replace(tiny_model.cfg, image_size=64))
    with pytest.raises(HeadError, match="trained on test-tiny at 128 px, not test-tiny at 64 px"):
        back.check_model(other)
    torch.save({"model": {}}, tmp_path / "ckpt.pt")
    with pytest.raises(HeadError, match="is not a samkit head"):
        PromptFreeHead.load(tmp_path / "ckpt.pt")
    with pytest.raises(HeadError, match="is not a samkit head"):
        PromptFreeHead.read_info(tmp_path / "ckpt.pt")
    (tmp_path / "broken.pt").write_bytes(b"nope")
    with pytest.raises(HeadError, match="cannot read head file"):
        PromptFreeHead.load(tmp_path / "broken.pt")
    with pytest.raises(HeadError, match="not found"):
        PromptFreeHead.load(tmp_path / "missing.pt")
    with pytest.raises(HeadError, match="distinct"):
        PromptFreeHead.from_model(tiny_model, ["a", "a"])


def test_predict_and_annotations(tiny_model, truck):
    head = PromptFreeHead.from_model(tiny_model, ["a", "b"])
    pred = ImagePredictor(tiny_model)
    with pytest.raises(RuntimeError, match="set_image"):
        head.predict(pred)
    pred.set_image(truck)
    masks, scores = head.predict(pred)
    h, w = truck.shape[:2]
    assert masks.shape == (2, h, w) and masks.dtype == bool and scores.shape == (2,)
    assert not (masks[0] & masks[1]).any()  # a class map: one class per pixel
    anns = head_annotations(masks, scores, ["a", "b"])
    assert [a["category"] for a in anns] == [c for c, m in zip("ab", masks) if m.any()]
    split = head_annotations(masks, scores, ["a", "b"], instances=True)
    assert len(split) >= len(anns) and sum(a["area"] for a in split) == sum(a["area"] for a in anns)


def test_class_images_and_errors(coco_shapes, tmp_path):
    data = ClassImages(coco_shapes, ["disc", "rect"])
    item = data.load(0)
    assert item.labels.shape == item.image.shape[:2] and set(np.unique(item.labels)) <= {0, 1, 2}
    with pytest.raises(HeadError, match="unknown category 'car'"):
        ClassImages(coco_shapes, ["car"])
    ann = coco_shapes.split(":")[1]
    doc = json.loads(open(ann).read())
    doc["annotations"] = [a for a in doc["annotations"] if a["category_id"] == 1]
    only_discs = tmp_path / "discs.json"
    only_discs.write_text(json.dumps(doc))
    with pytest.raises(HeadError, match="no mask of class 'rect'"):
        ClassImages(f"coco:{only_discs}:{coco_shapes.split(':')[2]}", ["disc", "rect"])
    with pytest.raises(HeadError, match="heads train on images"):
        ClassImages("davis:a:b", ["x"])


def test_embedding_cache_runs_the_encoder_once_per_image(tiny_model, tmp_path, monkeypatch):
    cache = EmbeddingCache(tmp_path, tiny_model, "c" * 64)
    img = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    calls = []
    real = tiny_model.encode_images
    monkeypatch.setattr(tiny_model, "encode_images", lambda x: calls.append(1) or real(x))
    e1, h1 = cache.get(img)
    e2, h2 = EmbeddingCache(tmp_path, tiny_model, "c" * 64).get(img)  # another process, same disk
    assert len(calls) == 1 and torch.equal(e1, e2) and all(torch.equal(a, b) for a, b in zip(h1, h2))
    assert e1.dtype == torch.float16
    EmbeddingCache(tmp_path, tiny_model, "d" * 64).get(img)  # another checkpoint: its own entry
    assert len(calls) == 2


def test_training_learns_reuses_embeddings_and_resumes(tiny_model, coco_shapes, tmp_path):
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    settings = HeadSettings(epochs=6, lr=2e-3, augment=("hflip",), seed=0)
    out = tmp_path / "head.pt"
    r = train_head(
        tiny_model, coco_shapes, ["disc", "rect"], out, settings, cache_dir=tmp_path / "c", progress=False
    )
    losses = [h["loss"] for h in r.history]
    assert len(losses) == 6 and losses[-1] < losses[0]
    n = len(ClassImages(coco_shapes, ["disc", "rect"]))  # images with a disc or a rect
    held_out = max(1, round(n * 0.1))
    assert r.encoded == (n - held_out) * 2 + held_out and r.cache_hits == 0  # hflip: twice each
    assert all("val_miou" in h for h in r.history) and r.best_val_miou == max(
        h["val_miou"] for h in r.history
    )
    assert PromptFreeHead.load(out).training_info["val_miou"] == r.best_val_miou
    assert all(torch.equal(v, before[k]) for k, v in tiny_model.state_dict().items())  # encoder frozen
    assert len((tmp_path / "head.pt.metrics.jsonl").read_text().splitlines()) == 6
    # the same command again: nothing left to train, the embeddings come from the cache
    again = train_head(
        tiny_model, coco_shapes, ["disc", "rect"], out, settings, cache_dir=tmp_path / "c", progress=False
    )
    assert again.resumed_from == 6 and again.encoded == 0 and again.cache_hits == r.encoded
    # other settings with the same output: refused, not mixed
    with pytest.raises(HeadError, match="other settings"):
        train_head(
            tiny_model,
            coco_shapes,
            ["disc", "rect"],
            out,
            HeadSettings(epochs=7),
            cache_dir=tmp_path / "c",
            progress=False,
        )


def test_resume_after_an_interruption_equals_an_uninterrupted_run(
    tiny_model, coco_shapes, tmp_path, monkeypatch
):
    settings = HeadSettings(epochs=3, lr=1e-3, val_fraction=0)
    kw = {"cache_dir": tmp_path / "c", "progress": False}
    full = train_head(tiny_model, coco_shapes, ["disc", "rect"], tmp_path / "a.pt", settings, **kw)
    import samkit.heads.train as ht

    real, calls = ht._validate, []

    def crash_after_two(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(ht, "_validate", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        train_head(tiny_model, coco_shapes, ["disc", "rect"], tmp_path / "b.pt", settings, **kw)
    monkeypatch.setattr(ht, "_validate", real)
    resumed = train_head(tiny_model, coco_shapes, ["disc", "rect"], tmp_path / "b.pt", settings, **kw)
    assert resumed.resumed_from == 2
    assert [h["loss"] for h in resumed.history] == pytest.approx([h["loss"] for h in full.history], rel=1e-5)
    a, b = PromptFreeHead.load(tmp_path / "a.pt"), PromptFreeHead.load(tmp_path / "b.pt")
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5, msg=k)


def test_embeddings_read_from_disk_when_they_would_not_fit_in_memory(tiny_model, coco_shapes, tmp_path):
    kw = {"cache_dir": tmp_path / "c", "progress": False}
    in_ram = train_head(
        tiny_model, coco_shapes, ["disc", "rect"], tmp_path / "a.pt", HeadSettings(epochs=2), **kw
    )
    from_disk = train_head(
        tiny_model,
        coco_shapes,
        ["disc", "rect"],
        tmp_path / "b.pt",
        HeadSettings(epochs=2, max_ram_gib=0),
        **kw,
    )
    assert from_disk.encoded == 0  # the cache from the first run
    assert [h["loss"] for h in from_disk.history] == pytest.approx(
        [h["loss"] for h in in_ram.history], rel=1e-6
    )
    import samkit.heads.train as ht

    items = ht._embed_all(
        ClassImages(coco_shapes, ["disc", "rect"]),
        [0, 1],
        (),
        EmbeddingCache(tmp_path / "c", tiny_model),
        32,
        type("Bar", (), {"update": lambda self: None})(),
        max_bytes=0,
    )
    assert all(it.tensors is None and it.path.is_file() for it in items)


def test_settings_are_checked():
    with pytest.raises(HeadError, match="lr must be > 0"):
        HeadSettings(lr=0)
    with pytest.raises(HeadError, match="unknown augmentation 'blur'"):
        HeadSettings(augment=("blur",))
