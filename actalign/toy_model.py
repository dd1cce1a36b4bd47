"""``toy-shapes``: a real SigLIP trained in code on generated shapes, so the method can be shown offline.

Where no real checkpoint can be downloaded, an untrained model makes every
number meaningless. This one is a ``SiglipModel`` with the usual tokenizer and
image processor, trained here with the sigmoid contrastive loss on images
drawn by ``actalign.shapes`` and captions naming their colour, shape, size,
position and background. It knows generated shapes and nothing else: its
folder says so (``ACTALIGN_TOY``) and every run with it shows a banner.

What makes it learn in under three minutes on two CPU cores: one caption per
image from a mix of templates, including single-attribute ones ("a circle",
"something red") that pull colour and shape apart; every caption of the batch
scored against every image with multi-positive labels (a caption is a positive
for each image it truly describes, so duplicates are never negatives); all
colour-shape captions added to each batch as extra texts; background grey
levels spread widely, so that seeing a shape does not depend on one contrast;
8-pixel patches on 32-pixel images.

The temperature exp(t) is fixed at 10 (the bias is learned). Learned, it climbs
and the affinities become all-or-nothing: a red star then scores 0.003 against
"a red circle". Fixed, a match scores about 0.98 and a partial match (the right
colour, another shape) about 0.05, against 0.001 for an unrelated scene: graded
like a real SigLIP's, which is what makes long stretches of background pull an
alignment that must cover every frame (the ``background`` demo set).

Some (colour, shape, background) combinations are never drawn in training;
``caption_accuracy`` measures the model on exactly those.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm
from transformers import SiglipConfig, SiglipImageProcessorPil, SiglipModel, SiglipProcessor, SiglipTokenizer

from actalign import shapes
from actalign.builtin_models import built_model_path
from actalign.caveats import TOY_MARKER
from actalign.shapes import BACKGROUNDS, COLOURS, POSITIONS, SHAPES, SIZES, Scene
from actalign.tiny_model import train_tokenizer
from actalign.toy_recipe import RECIPE, Recipe

RECIPE_FILE = "toy_recipe.json"
ANY = "*"




def toy_shapes_path(recipe: Recipe = RECIPE) -> Path:
    """The trained model's folder, trained on first use (two to three minutes, with a progress bar)."""
    return built_model_path(recipe.folder(), TOY_MARKER, lambda folder: train(folder, recipe))


def caption_corpus() -> list[str]:
    """Every caption the templates can write: what the tokenizer learns its pieces from."""
    lines = [f"this action is a {s} {c} {h} on the {p} on a {b} background in shapes, then" for c in COLOURS for h in SHAPES for s in SIZES for p in POSITIONS for b in BACKGROUNDS]
    return lines + [f"something {c}" for c in COLOURS] + [f"a {h}" for h in SHAPES]


def sample_scenes(rng: np.random.Generator, n: int, recipe: Recipe, held_out: bool = False) -> tuple[list[Scene], np.ndarray]:
    """``n`` random scenes and their words (n, 5: colour, shape, size, position, background); only held-out combinations when ``held_out``."""
    hidden = set(recipe.held_out)
    scenes, words = [], []
    while len(scenes) < n:
        colour, shape, background = (str(rng.choice(options)) for options in (list(COLOURS), SHAPES, list(BACKGROUNDS)))
        if ((colour, shape, background) in hidden) != held_out:
            continue
        size, position = str(rng.choice(list(SIZES))), str(rng.choice(list(POSITIONS)))
        centre = np.add(POSITIONS[position], rng.uniform(-recipe.position_jitter, recipe.position_jitter, 2))
        scenes.append(
            Scene(
                colour,
                shape,
                float(rng.uniform(*SIZES[size])),
                (float(centre[0]), float(centre[1])),
                background,
                float(rng.uniform(0, recipe.max_noise)),
                tuple(int(v) for v in rng.integers(-recipe.max_tint, recipe.max_tint + 1, 3)),
                int(rng.integers(-recipe.max_shade, recipe.max_shade + 1)),
            )
        )
        words.append((colour, shape, size, position, background))
    return scenes, np.array(words)


def caption(rng: np.random.Generator, words: np.ndarray) -> tuple[str, tuple[str, ...]]:
    """A caption of one scene and what it pins down (ANY for an attribute it does not name)."""
    colour, shape, size, position, background = words
    templates = (
        (f"a {colour} {shape}", (colour, shape, ANY, ANY, ANY)),
        (f"a {colour} {shape}", (colour, shape, ANY, ANY, ANY)),
        (f"a {size} {colour} {shape}", (colour, shape, size, ANY, ANY)),
        (f"a {colour} {shape} on the {position}", (colour, shape, ANY, position, ANY)),
        (f"a {colour} {shape} on a {background} background", (colour, shape, ANY, ANY, background)),
        (f"this action is a {colour} {shape} on a {background} background", (colour, shape, ANY, ANY, background)),
        (f"something {colour}", (colour, ANY, ANY, ANY, ANY)),
        (colour, (colour, ANY, ANY, ANY, ANY)),
        (f"a {shape}", (ANY, shape, ANY, ANY, ANY)),
        (shape, (ANY, shape, ANY, ANY, ANY)),
    )
    text, pinned = templates[rng.integers(len(templates))]
    return (f"{text} in shapes" if rng.random() < 0.4 else text), pinned


def _pixels(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> the image processor's values: rescaled to [0, 1], normalised with mean and std 0.5."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


class _Texts:
    """Token ids per caption, tokenized once: the same few hundred captions come back every step."""

    def __init__(self, tokenizer: SiglipTokenizer, length: int) -> None:
        self._tokenizer, self._length, self._ids = tokenizer, length, {}

    def __call__(self, texts: list[str]) -> torch.Tensor:
        new = [text for text in texts if text not in self._ids]
        if new:
            ids = self._tokenizer(new, padding="max_length", truncation=True, max_length=self._length, return_tensors="pt").input_ids
            self._ids.update(zip(new, ids))
        return torch.stack([self._ids[text] for text in texts])


def _embed(model: SiglipModel, pixels: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    images = F.normalize(model.get_image_features(pixel_values=pixels).pooler_output, dim=-1)
    texts = F.normalize(model.get_text_features(input_ids=ids).pooler_output, dim=-1)
    return images, texts


def train(folder: Path, recipe: Recipe = RECIPE) -> None:
    """Train the model and save it with its tokenizer, image processor, recipe and marker into ``folder``."""
    started = time.monotonic()
    tokenizer = train_tokenizer(folder, caption_corpus(), recipe.vocab_size, recipe.text_length)
    config = SiglipConfig(
        text_config={
            "vocab_size": tokenizer.vocab_size,
            "hidden_size": recipe.hidden,
            "intermediate_size": recipe.hidden * 2,
            "num_hidden_layers": recipe.text_layers,
            "num_attention_heads": recipe.heads,
            "max_position_embeddings": recipe.text_length,
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "bos_token_id": None,
        },
        vision_config={
            "hidden_size": recipe.hidden,
            "intermediate_size": recipe.hidden * 2,
            "num_hidden_layers": recipe.vision_layers,
            "num_attention_heads": recipe.heads,
            "image_size": recipe.image_size,
            "patch_size": recipe.patch_size,
        },
    )
    threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        # One thread for torch, one for drawing batches: faster than two for torch's small operations, and the
        # same seed gives the same weights whatever the machine's core count.
        torch.set_num_threads(1)
        try:
            model = _fit(SiglipModel(config), tokenizer, recipe)
        finally:
            torch.set_num_threads(threads)
    image_processor = SiglipImageProcessorPil(size={"height": recipe.image_size, "width": recipe.image_size})
    model.save_pretrained(folder)
    SiglipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    texts = _Texts(tokenizer, recipe.text_length)
    with torch.inference_mode():
        accuracy = caption_accuracy(
            lambda images: model.get_image_features(pixel_values=_pixels(images)).pooler_output.numpy(),
            lambda captions: model.get_text_features(input_ids=texts(captions)).pooler_output.numpy(),
            recipe,
        )
    card = {
        "what": "a SigLIP trained by actalign.toy_model on generated shapes only; it knows nothing of real video",
        "recipe": asdict(recipe),
        "recipe_hash": recipe.digest(),
        "train_seconds": round(time.monotonic() - started, 1),
        "held_out_caption_accuracy": accuracy,
    }
    (folder / RECIPE_FILE).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    (folder / TOY_MARKER).write_text(
        "This SigLIP was trained by actalign.toy_model on generated images of coloured shapes only.\n"
        "Its scores mean something for generated shapes and nothing for real video.\n",
        encoding="utf-8",
    )


def _fit(model: SiglipModel, tokenizer: SiglipTokenizer, recipe: Recipe) -> SiglipModel:
    with torch.no_grad():
        model.logit_scale.fill_(math.log(recipe.logit_scale))
        model.logit_bias.fill_(recipe.logit_bias)
    model.logit_scale.requires_grad_(False)
    optimiser = torch.optim.AdamW(model.parameters(), lr=recipe.learning_rate, weight_decay=recipe.weight_decay, betas=(0.9, 0.98))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser,
        lambda step: min(1.0, (step + 1) / recipe.warmup_steps) * 0.5 * (1 + math.cos(math.pi * step / recipe.steps)),
    )
    rng = np.random.default_rng(recipe.seed)
    texts = _Texts(tokenizer, recipe.text_length)
    model.train()
    # One thread draws the next batch while torch trains on this one; only it touches rng, so the order is fixed.
    with ThreadPoolExecutor(1, thread_name_prefix="toy-shapes-data") as pool, tqdm(
        total=recipe.steps, desc="training toy-shapes (once)", unit="step", leave=False, mininterval=1.0
    ) as bar:
        upcoming = pool.submit(_batch, rng, recipe)
        for _ in range(recipe.steps):
            pixels, batch_texts, labels = upcoming.result()
            upcoming = pool.submit(_batch, rng, recipe)
            images, captions = _embed(model, pixels, texts(batch_texts))
            logits = images @ captions.T * model.logit_scale.exp() + model.logit_bias
            loss = -F.logsigmoid(labels * logits).sum() / len(pixels)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            bar.set_postfix(loss=f"{loss.item():.2f}", refresh=False)
            bar.update()
        upcoming.cancel()
    return model.eval()


def _batch(rng: np.random.Generator, recipe: Recipe) -> tuple[torch.Tensor, list[str], torch.Tensor]:
    """(pixel values, texts, +1/-1 labels of every image against every text) of one training batch.

    The texts are one caption per image plus every "a <colour> <shape>"; a text is a
    positive for each image it describes, so a repeated caption is never a negative.
    """
    scenes, words = sample_scenes(rng, recipe.batch_size, recipe)
    pinned = {f"a {c} {h}": (c, h, ANY, ANY, ANY) for c in COLOURS for h in SHAPES}
    pinned.update(caption(rng, row) for row in words)
    batch_texts = sorted(pinned)
    wanted = np.array([pinned[text] for text in batch_texts])
    positive = ((wanted[None] == ANY) | (wanted[None] == words[:, None])).all(axis=-1)
    labels = torch.from_numpy(np.where(positive, 1.0, -1.0).astype(np.float32))
    return _pixels(shapes.render(scenes, recipe.image_size, rng, supersample=2)), batch_texts, labels


def caption_accuracy(
    embed_images: Callable[[np.ndarray], np.ndarray],
    embed_texts: Callable[[list[str]], np.ndarray],
    recipe: Recipe = RECIPE,
    size: int | None = None,
    n: int = 1000,
    seed: int = 12345,
) -> float:
    """How often "a <colour> <shape>" ranks first among all such captions, on held-out combinations only.

    ``embed_images`` takes uint8 (N, size, size, 3) images (default size: the model's input size).
    """
    rng = np.random.default_rng(seed)
    scenes, words = sample_scenes(rng, n, recipe, held_out=True)
    candidates = [f"a {c} {h}" for c in COLOURS for h in SHAPES]
    truth = np.array([candidates.index(f"a {c} {h}") for c, h in words[:, :2]])
    images = embed_images(shapes.render(scenes, size or recipe.image_size, rng, supersample=2))
    captions = embed_texts(candidates)
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    captions /= np.linalg.norm(captions, axis=1, keepdims=True)
    return float(np.mean((images @ captions.T).argmax(axis=1) == truth))
