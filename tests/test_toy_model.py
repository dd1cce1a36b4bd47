"""toy-shapes: a real SigLIP trained here on generated shapes, loaded like any checkpoint, that tells unseen scenes apart.

The session's model is trained once per test session (a few minutes) into the
session's private cache, so the tests using it are marked slow; the recipe tests train a few steps only.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from safetensors.torch import load_file
from transformers import SiglipImageProcessorPil, SiglipModel, SiglipTokenizer

from actalign.caveats import TOY_BANNER, TOY_MARKER, UNTRAINED_BANNER
from actalign.models import Encoder, load_encoder
from actalign.registry import REGISTRY
from actalign.toy_model import RECIPE, RECIPE_FILE, caption_accuracy, toy_shapes_path, train

SMALL = replace(RECIPE, steps=3, batch_size=8)


@pytest.mark.slow
def test_a_real_siglip_loaded_like_any_checkpoint(toy_encoder: Encoder) -> None:
    folder = toy_shapes_path()
    assert folder.name == f"toy-shapes-{RECIPE.digest()}"
    assert isinstance(toy_encoder.model, SiglipModel)
    assert isinstance(toy_encoder.tokenizer, SiglipTokenizer)
    assert isinstance(toy_encoder.image_processor, SiglipImageProcessorPil)
    assert REGISTRY["toy-shapes"].trained and toy_encoder.identity.trained
    card = json.loads((folder / RECIPE_FILE).read_text(encoding="utf-8"))
    assert "generated shapes only" in card["what"] and card["recipe_hash"] == RECIPE.digest()
    assert "generated images of coloured shapes only" in (folder / TOY_MARKER).read_text(encoding="utf-8")
    # the banner comes from the folder, so a copy loaded by path says the same
    assert toy_encoder.identity.caveat == TOY_BANNER != UNTRAINED_BANNER
    assert load_encoder(str(folder)).identity.caveat == TOY_BANNER


@pytest.mark.slow
def test_unseen_combinations_rank_their_caption_first(toy_encoder: Encoder) -> None:
    """Scenes whose (colour, shape, background) never occurred in training, drawn at 128 px and
    resized by the model's own image processor, as a video frame larger than the model would be."""
    accuracy = caption_accuracy(toy_encoder.embed_images, toy_encoder.embed_texts, size=128)
    assert accuracy >= 0.9
    card = json.loads((toy_shapes_path() / RECIPE_FILE).read_text(encoding="utf-8"))
    assert card["held_out_caption_accuracy"] >= 0.9  # the same check at the model's own size, when it was trained


@pytest.mark.slow  # 2 s or more: `make test-fast` leaves it out
def test_training_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    folders = {name: tmp_path / name for name in ("a", "b", "other-seed")}
    for name, folder in folders.items():
        folder.mkdir()
        train(folder, replace(SMALL, seed=1) if name == "other-seed" else SMALL)
    weights = {name: load_file(folder / "model.safetensors") for name, folder in folders.items()}
    assert weights["a"].keys() == weights["b"].keys()
    assert all(weights["a"][key].equal(weights["b"][key]) for key in weights["a"])
    assert not all(weights["a"][key].equal(weights["other-seed"][key]) for key in weights["a"])


@pytest.mark.slow
def test_a_changed_recipe_is_trained_into_its_own_folder(toy_encoder: Encoder) -> None:
    assert SMALL.digest() != RECIPE.digest() != replace(RECIPE, held_out=RECIPE.held_out[1:]).digest()
    folder = toy_shapes_path(SMALL)
    assert folder.name == f"toy-shapes-{SMALL.digest()}" and folder.parent == toy_shapes_path().parent
    assert (folder / TOY_MARKER).is_file()
    assert json.loads((folder / RECIPE_FILE).read_text(encoding="utf-8"))["recipe"]["steps"] == 3


@pytest.fixture(scope="module")
def toy_encoder(toy_shapes: Path) -> Encoder:
    return load_encoder("toy-shapes")
