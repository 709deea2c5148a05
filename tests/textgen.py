"""Tiny randomly initialised open-vocabulary detectors (Grounding DINO and OWLv2 architectures) saved
as local Hugging Face folders, with tokenizers built here: what the text-prompt tests load instead of
downloading ``IDEA-Research/grounding-dino-tiny`` or ``google/owlv2-base-patch16``."""

from __future__ import annotations

from pathlib import Path

WORDS = ["truck", "person", "dog", "cat", "tree", "car", "red", "square", "a", "photo", "of", "the", "thing"]


def _byte_characters() -> list[str]:
    """GPT-2 / CLIP's byte-level alphabet: one printable character per byte value."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars, extra = {b: chr(b) for b in printable}, 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def grounding_dino(path: str | Path, seed: int = 0) -> Path:
    """A Grounding DINO with a 1-layer Swin and BERT, a 1-layer encoder and a 2-layer decoder (d_model 32)."""
    import torch
    from transformers import (
        BertConfig,
        BertTokenizerFast,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    path = Path(path)
    if (path / "config.json").is_file():
        return path
    path.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", *WORDS]
    tokenizer = BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=True)
    backbone = SwinConfig(
        embed_dim=16,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 2, 2],
        window_size=4,
        image_size=64,
        out_features=["stage2", "stage3", "stage4"],
    )
    text = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    cfg = GroundingDinoConfig(
        backbone_config=backbone,
        text_config=text,
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        num_queries=16,
        max_text_len=32,
        num_feature_levels=3,
        encoder_n_points=2,
        decoder_n_points=2,
        fusion_dropout=0.0,
        text_enhancer_dropout=0.0,
    )
    torch.manual_seed(seed)
    model = GroundingDinoForObjectDetection(cfg).eval()
    model.save_pretrained(path)
    image_processor = GroundingDinoImageProcessor(size={"shortest_edge": 64, "longest_edge": 96})
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(path)
    return path


def owlv2(path: str | Path, seed: int = 0) -> Path:
    """An OWLv2 with 1-layer 32-wide CLIP towers on 64 px images (patch 16)."""
    import torch
    from transformers import (
        CLIPTokenizerFast,
        Owlv2Config,
        Owlv2ForObjectDetection,
        Owlv2ImageProcessor,
        Owlv2Processor,
    )

    path = Path(path)
    if (path / "config.json").is_file():
        return path
    path.mkdir(parents=True, exist_ok=True)
    # a byte-level BPE vocabulary without merges: every character a token, the last one of a word
    # with CLIP's end-of-word mark
    chars = _byte_characters()
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    tokenizer = CLIPTokenizerFast(vocab=vocab, merges=[], pad_token="!", model_max_length=16)
    cfg = Owlv2Config(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "max_position_embeddings": 16,
            "bos_token_id": vocab["<|startoftext|>"],
            "eos_token_id": vocab["<|endoftext|>"],
            "pad_token_id": vocab["!"],
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 64,
            "patch_size": 16,
        },
        projection_dim=32,
    )
    torch.manual_seed(seed)
    model = Owlv2ForObjectDetection(cfg).eval()
    with torch.no_grad():
        # scores spread around 0.5 (a random class head gives ~1e-17) and boxes near their patches'
        # default boxes exactly (a random box head gives boxes squeezed to lines)
        model.class_head.logit_scale.weight.zero_()
        model.class_head.logit_scale.bias.fill_(3.0)
        model.class_head.logit_shift.weight.zero_()
        model.class_head.logit_shift.bias.zero_()
        model.box_head.dense2.weight.zero_()
        model.box_head.dense2.bias.zero_()
    model.save_pretrained(path)
    image_processor = Owlv2ImageProcessor(size={"height": 64, "width": 64})
    Owlv2Processor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(path)
    return path
