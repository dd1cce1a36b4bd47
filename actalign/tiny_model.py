"""Untrained models built in code, so tests, demos and benchmarks run without the hub.

Their scores are meaningless. ``tiny-random`` exercises the real loading path
(``save_pretrained`` then ``AutoModel.from_pretrained``) in seconds, offline;
``base-random`` has the shape of SigLIP base, for realistic speed measurements;
``tiny-clip`` and ``tiny-siglip2`` do the same for the other families: a CLIP
(byte-level BPE tokenizer, 77 tokens, resize and centre crop, no bias) and a
SigLIP 2 at fixed resolution (a SigLIP with Gemma's tokenizer).
The folder carries an ``ACTALIGN_UNTRAINED`` marker so that anything loading it,
even by path, knows it is untrained.
"""

from __future__ import annotations

import io
import string
from collections.abc import Iterable
from pathlib import Path

import sentencepiece as spm
import torch
from transformers import (
    CLIPConfig,
    CLIPImageProcessorPil,
    CLIPModel,
    CLIPProcessor,
    CLIPTokenizer,
    GemmaTokenizer,
    SiglipConfig,
    SiglipImageProcessorPil,
    SiglipModel,
    SiglipProcessor,
    SiglipTokenizer,
)
from transformers.convert_slow_tokenizer import bytes_to_unicode

from actalign.builtin_models import TINY, TINY_CLIP_FOLDER, TINY_SIGLIP2_FOLDER, RandomTowerSize, built_model_path
from actalign.caveats import UNTRAINED_MARKER

TINY_TEXT_LENGTH = 64  # the real SigLIP (and SigLIP 2) text length, so padding behaves as in production
CLIP_TEXT_LENGTH = 77  # the real CLIP text length
TINY_VOCAB_SIZE = 160  # the largest round size this corpus supports with a hard limit


# Training text for the tokenizer: enough variety for ~160 pieces; content is irrelevant.
_CORPUS = (
    "a football player kicks the ball into the top corner of the goal",
    "the goalkeeper dives to the left and catches the penalty",
    "a basketball player dribbles, jumps and dunks with both hands",
    "the tennis player tosses the ball and serves an ace",
    "a gymnast runs, springs off the vault and lands a double twist",
    "on the balance beam she performs a back handspring and a split leap",
    "the swimmer pushes off the wall and swims butterfly strokes",
    "a diver bounces on the springboard and enters the water vertically",
    "the sprinter crouches in the blocks and explodes at the starting gun",
    "a high jumper curves towards the bar and arches over it backwards",
    "the boxer throws a jab, a hook and an uppercut",
    "a skier carves sharp turns down the steep icy slope",
    "the cyclist stands on the pedals while climbing the mountain road",
    "a weightlifter cleans the barbell to the shoulders and jerks it overhead",
    "the figure skater spins quickly, then glides backwards on one foot",
    "a red circle sits beside a blue square on white paper",
    "three green triangles and a yellow star float in a purple sky",
    "an orange hexagon overlaps a pink rectangle and a grey oval",
    "black and white stripes form a zigzag pattern",
    "the brown diamond is smaller than the violet cube",
)

def tiny_random_path() -> Path:
    return random_model_path(TINY)


def random_model_path(size: RandomTowerSize) -> Path:
    """Build an untrained SigLIP once (per cache folder) and return its folder."""
    return built_model_path(size.folder, UNTRAINED_MARKER, lambda folder: _build(folder, size))


def tiny_clip_path() -> Path:
    """Build the untrained tiny CLIP once and return its folder."""
    return built_model_path(TINY_CLIP_FOLDER, UNTRAINED_MARKER, _build_clip)


def tiny_siglip2_path() -> Path:
    """Build the untrained tiny SigLIP 2 (fixed resolution) once and return its folder."""
    return built_model_path(TINY_SIGLIP2_FOLDER, UNTRAINED_MARKER, _build_siglip2)


def train_tokenizer(folder: Path, corpus: Iterable[str], vocab_size: int, max_length: int) -> SiglipTokenizer:
    """A SiglipTokenizer whose sentencepiece model is trained on ``corpus`` (at most ``vocab_size`` pieces).

    SiglipTokenizer expects </s> (pad and eos, as in the real checkpoints) and <unk>;
    the ids follow the real vocabulary: <pad>=0, </s>=1, <unk>=2, no <s>.
    """
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus),
        model_writer=proto,
        vocab_size=vocab_size,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        character_coverage=1.0,
        num_threads=1,  # deterministic
        minloglevel=2,
    )
    vocab_file = folder / "spiece.model"
    vocab_file.write_bytes(proto.getvalue())
    return SiglipTokenizer(vocab_file=str(vocab_file), model_max_length=max_length)


def _towers(size: RandomTowerSize, text_length: int, tokenizer) -> tuple[dict, dict]:
    """The text and vision tower settings of an untrained model of ``size``."""
    layers = {"hidden_size": size.hidden, "intermediate_size": size.intermediate, "num_hidden_layers": size.layers, "num_attention_heads": size.heads}
    text = {
        **layers,
        "vocab_size": tokenizer.vocab_size,
        "max_position_embeddings": text_length,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "bos_token_id": tokenizer.bos_token_id,
    }
    return text, {**layers, "image_size": size.image_size, "patch_size": size.patch_size}


def _seeded(make):
    """A model with deterministic weights, without touching the caller's RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return make()


def _mark_untrained(folder: Path, what: str) -> None:
    (folder / UNTRAINED_MARKER).write_text(f"This {what} has random weights (built by actalign.tiny_model); its scores are meaningless.\n")


def _build(folder: Path, size: RandomTowerSize) -> None:
    _build_siglip(folder, size, train_tokenizer(folder, _CORPUS, TINY_VOCAB_SIZE, TINY_TEXT_LENGTH), "SigLIP")


def _build_siglip(folder: Path, size: RandomTowerSize, tokenizer, what: str) -> None:
    text, vision = _towers(size, TINY_TEXT_LENGTH, tokenizer)
    model = _seeded(lambda: SiglipModel(SiglipConfig(text_config=text, vision_config=vision)))
    with torch.no_grad():
        # The init zeroes both; the trained checkpoints' values make scores look realistic in shape.
        model.logit_scale.fill_(2.3)
        model.logit_bias.fill_(-10.0)
    image_processor = SiglipImageProcessorPil(size={"height": size.image_size, "width": size.image_size})
    model.save_pretrained(folder)
    SiglipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    _mark_untrained(folder, what)


def _build_siglip2(folder: Path) -> None:
    """A SigLIP 2 at fixed resolution is a SigLIP whose tokenizer is Gemma's (byte fallback, lowercased text)."""
    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4}
    vocab.update({f"<0x{byte:02X}>": 5 + byte for byte in range(256)})
    for piece in "\u2581" + string.ascii_lowercase + string.digits + string.punctuation:
        vocab.setdefault(piece, len(vocab))
    tokenizer = GemmaTokenizer(vocab=vocab, merges=[], model_max_length=TINY_TEXT_LENGTH, padding_side="right")
    _build_siglip(folder, TINY, tokenizer, "SigLIP 2")


def _build_clip(folder: Path) -> None:
    """CLIP's byte-level BPE with no merges (one token per byte), its 77 tokens, and its resize-then-crop processor."""
    characters = list(bytes_to_unicode().values())
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    vocab.update({piece: len(vocab) + i for i, piece in enumerate([*characters, *(c + "</w>" for c in characters)])})
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=CLIP_TEXT_LENGTH)
    text, vision = _towers(TINY, CLIP_TEXT_LENGTH, tokenizer)
    model = _seeded(lambda: CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=TINY.hidden // 2)))
    with torch.no_grad():
        model.logit_scale.fill_(4.6052)  # ln(100): where CLIP's learned temperature ends (it is capped there)
    side = TINY.image_size
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": side}, crop_size={"height": side, "width": side})
    model.save_pretrained(folder)
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    _mark_untrained(folder, "CLIP")
