"""Every model family (SigLIP, SigLIP 2 at fixed resolution, CLIP) through loading and the pipeline, with its
built-in untrained tiny model, and the affinity calibrations (actalign.calibration). Untrained models:
these tests check plumbing, processors, identities and keys, never accuracy."""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import duckdb
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from actalign import calibration, models
from actalign.config import RunConfig
from actalign.errors import InputError, ModelNotFoundError
from actalign.flows.pipeline import run_pipeline
from actalign.inputs import read_inputs
from actalign.registry import REGISTRY, ModelIdentity, read_identity
from actalign.stages import embed_key, frames_key, pair_key, run_settings
from actalign.storage.freshness import plan_run
from actalign.storage.workdir import Workdir
from actalign.tasks.acquire import source_fingerprint
from tests.test_startup import ACTALIGN, HEAVY, imported_modules

FAMILIES = {"tiny-random": "siglip", "tiny-siglip2": "siglip2", "tiny-clip": "clip"}


def frames(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("name", FAMILIES)
def test_each_family_loads_with_its_own_processor(name: str):
    encoder = models.load_encoder(name, device="cpu", batch_size=4)
    identity = encoder.identity
    assert (identity.family, identity.calibration) == (FAMILIES[name], calibration.default_for(FAMILIES[name]))
    assert read_identity(name) == identity  # planning reads from the files exactly what loading finds
    assert not identity.trained and "UNTRAINED" in identity.caveat
    # Frames at the model's input size skip the processor: the same pixel values as the checkpoint's own processor.
    batch = frames(5, *encoder.image_size, seed=1)
    reference = encoder.image_processor(images=list(batch), return_tensors="pt", input_data_format="channels_last").pixel_values
    torch.testing.assert_close(encoder.preprocess_images(batch), reference, atol=1e-5, rtol=0)
    # Other sizes go through it (CLIP: shortest edge, then the centre crop).
    assert encoder.embed_images(frames(3, 45, 61)).shape == (3, encoder.embed_dim)
    texts = encoder.embed_texts(["A gymnast flips", "the swimmer dives into the pool " * 30])
    assert texts.shape == (2, encoder.embed_dim) and np.isfinite(texts).all()


def test_clip_text_settings_are_clips():
    encoder = models.load_encoder("tiny-clip", device="cpu", batch_size=4)
    assert encoder.text_max_length == 77 and encoder.embed_dim == encoder.model.config.projection_dim
    inputs = encoder.tokenize(["a gymnast flips"])
    assert set(inputs) == {"input_ids", "attention_mask"} and inputs["input_ids"].shape == (1, 77)
    # Padding is masked by the causal tower: a text embeds the same alone or beside a long one.
    pair = encoder.embed_texts(["a gymnast flips", "the swimmer dives " * 10])
    np.testing.assert_allclose(pair[0], encoder.embed_texts(["a gymnast flips"])[0], atol=1e-5, rtol=0)


def test_siglip2_lowercases_as_it_was_trained():
    encoder = models.load_encoder("tiny-siglip2", device="cpu", batch_size=4)
    assert type(encoder.tokenizer).__name__ == "GemmaTokenizer" and encoder.text_max_length == 64
    np.testing.assert_array_equal(encoder.embed_texts(["A Gymnast FLIPS"]), encoder.embed_texts(["a gymnast flips"]))


def test_calibrations_are_sigmoids_of_the_checkpoint():
    scale = math.log(117.3)
    assert calibration.effective("sigmoid", "siglip", scale, -12.9) == (scale, -12.9)  # the very numbers: bit-identical scores
    assert calibration.effective("midpoint", "clip", math.log(100.0), None) == pytest.approx((math.log(100.0), -25.0))
    assert calibration.effective("cosine", "clip", math.log(100.0), None) == (math.log(2.0), 0.0)
    with pytest.raises(InputError, match="no.*logit_bias|none"):
        calibration.effective("sigmoid", "clip", math.log(100.0), None)
    with pytest.raises(InputError, match="choose one of sigmoid, midpoint, cosine"):
        read_identity("tiny-clip", calibration="softmax")
    assert read_identity("tiny-clip").logit_bias == pytest.approx(-math.exp(read_identity("tiny-clip").logit_scale) * 0.25)


def test_default_siglip_keys_are_unchanged():
    """An identity as older code made it (no family, no calibration) keys exactly as the default SigLIP identity."""
    identity = read_identity("tiny-random")
    legacy = ModelIdentity(*(getattr(identity, f) for f in list(ModelIdentity.__dataclass_fields__)[:10]))
    config = RunConfig(videos=Path("v.csv"), classes=Path("c.yaml"), model="tiny-random")
    assert pair_key("actalign", config, identity, "f", {"steps": "s"}) == pair_key("actalign", config, legacy, "f", {"steps": "s"})
    assert "calibration" not in run_settings(config, identity)["score"]


def test_switching_calibration_changes_only_the_pair_keys():
    config = RunConfig(videos=Path("v.csv"), classes=Path("c.yaml"), model="tiny-clip")
    midpoint, cosine = read_identity("tiny-clip"), read_identity("tiny-clip", calibration="cosine")
    video = type("V", (), {"video_id": "v", "start_s": None, "end_s": None, "obfuscation": None})()
    assert frames_key(video, "src", config, midpoint) == frames_key(video, "src", config, cosine)
    assert embed_key("script", config, midpoint) == embed_key("script", config, cosine)
    assert pair_key("actalign", config, midpoint, "f", {"steps": "s"}) != pair_key("actalign", config, cosine, "f", {"steps": "s"})
    assert run_settings(config, cosine)["score"]["calibration"] == "cosine"


def test_sigmoid_calibration_is_the_checkpoints_own_numbers():
    """The scorers get the very scale and bias stored in the weights, so SigLIP scores are bit-identical."""
    folder = Path(models.load_encoder("tiny-random", device="cpu", batch_size=4).model.name_or_path)
    weights = load_file(folder / "model.safetensors")
    identity = read_identity("tiny-random")
    assert (identity.logit_scale, identity.logit_bias) == (weights["logit_scale"].item(), weights["logit_bias"].item())


def test_registry_lists_the_families():
    assert REGISTRY["siglip2-so400m"].source == "google/siglip2-so400m-patch14-384" and REGISTRY["siglip2-so400m"].family == "siglip2"
    assert REGISTRY["clip-vit-l-14-336"].source == "openai/clip-vit-large-patch14-336" and REGISTRY["clip-vit-l-14-336"].input_size == 336
    assert {REGISTRY[n].family for n in ("siglip2-base", "clip-vit-b-16")} == {"siglip2", "clip"}
    assert all(spec.family in calibration.FAMILY_DEFAULT and spec.description for spec in REGISTRY.values())


@pytest.mark.slow  # 2 s or more: `make test-fast` leaves it out
@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("name", ["tiny-siglip2", "tiny-clip"])
def test_each_family_runs_through_the_pipeline(name: str, demo_dataset, tmp_path: Path):
    manifest, classes = demo_dataset
    config = RunConfig(videos=manifest, classes=classes, workdir=tmp_path, model=name, shard_size=4)
    summary = run_pipeline(config)
    assert summary.state == "completed" and summary.n_failed == 0 and not summary.trained
    assert summary.scored_pairs == 6 * 6 * 2
    assert "UNTRAINED MODEL" in Path(summary.report).read_text()
    with duckdb.connect(str(tmp_path / "actalign.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM scores WHERE run_id = ?", [summary.run_id]).fetchone() == (72,)
        assert con.execute("SELECT count(DISTINCT video_id) FROM predictions WHERE run_id = ?", [summary.run_id]).fetchone() == (6,)


@pytest.mark.slow  # 2 s or more: `make test-fast` leaves it out
@pytest.mark.usefixtures("prefect_harness")
def test_switching_calibration_rescores_only_the_pairs(demo_dataset, tmp_path: Path):
    """A run with another --calibration finds every frame and text embedding fresh and re-scores only the
    pairs (every scorer's: pair keys hash the affinity's scale and bias); the run records the choice."""
    manifest, classes = demo_dataset
    config = RunConfig(videos=manifest, classes=classes, workdir=tmp_path, model="tiny-clip", shard_size=4)
    first = run_pipeline(config)
    assert first.state == "completed" and first.encoded_frames > 0 and first.scored_pairs == 6 * 6 * 2

    switched_config = config.model_copy(update={"calibration": "cosine"})
    identity = read_identity("tiny-clip", calibration="cosine")
    planned = plan_run(Workdir.open(tmp_path), switched_config, read_inputs(switched_config), identity, lambda video: source_fingerprint(video, config))
    stale = {stage: len(planned.stale(stage)) for stage in ("acquire", "scripts", "step_embeddings", "score")}
    assert stale == {"acquire": 0, "scripts": 0, "step_embeddings": 0, "score": 6 * 6 * 2}
    assert any("calibration" in reason for reason in planned.reasons("score"))

    switched = run_pipeline(switched_config)
    assert (switched.decoded_frames, switched.encoded_frames, switched.encoded_texts) == (0, 0, 0)
    assert (switched.scored_pairs, switched.reused_pairs) == (6 * 6 * 2, 0)
    with duckdb.connect(str(tmp_path / "actalign.duckdb"), read_only=True) as con:
        recorded = con.execute("SELECT stage_keys FROM runs WHERE run_id = ?", [switched.run_id]).fetchone()[0]
    assert json.loads(recorded)["model"]["calibration"] == "cosine"
    assert run_pipeline(config).scored_pairs == 0  # switching back: the first run's pairs are still in the store


@pytest.mark.slow  # 2 s or more: `make test-fast` leaves it out
def test_models_command_lists_the_registry_without_torch(tmp_path: Path):
    models.load_encoder("tiny-clip", device="cpu", batch_size=4)  # built in this session's cache: listed as local
    assert not imported_modules(["models"], tmp_path) & set(HEAVY)
    done = subprocess.run([*ACTALIGN, "models"], check=False, cwd=tmp_path, capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "250"})
    assert done.returncode == 0, done.stderr
    lines = {line.split("│")[1].strip(): [cell.strip() for cell in line.split("│")[2:6]] for line in done.stdout.splitlines() if line.count("│") > 6}
    assert lines["clip-vit-l-14-336"] == ["clip", "336 px", "midpoint", "no"]
    assert lines["siglip2-so400m"] == ["siglip2", "384 px", "sigmoid", "no"]
    assert lines["tiny-clip"] == ["clip", "32 px", "midpoint", "yes"]


def test_other_model_types_are_refused_naming_the_families(tmp_path: Path):
    folder = Path(models.load_encoder("tiny-clip", device="cpu", batch_size=4).model.name_or_path)
    copy = tmp_path / "bert-like"
    copy.mkdir()
    for path in folder.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    (copy / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ModelNotFoundError, match="'bert' model; actalign loads SigLIP, SigLIP 2 .* CLIP-family"):
        read_identity(str(copy))


def test_a_clip_with_the_older_processor_config_has_its_crop_size(tmp_path: Path):
    """openai/clip-* checkpoints save preprocessor_config.json with plain numbers ("size": 336, "crop_size": 336)."""
    folder = Path(models.load_encoder("tiny-clip", device="cpu", batch_size=4).model.name_or_path)
    copy = tmp_path / "old-clip"
    copy.mkdir()
    for path in folder.iterdir():
        if path.name != "processor_config.json":
            (copy / path.name).write_bytes(path.read_bytes())
    settings = {"crop_size": 32, "do_center_crop": True, "do_normalize": True, "do_resize": True, "feature_extractor_type": "CLIPFeatureExtractor",
                "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": 32}
    (copy / "preprocessor_config.json").write_text(json.dumps(settings))
    encoder = models.load_encoder(str(copy), device="cpu", batch_size=4)
    assert read_identity(str(copy)).image_size == encoder.image_size == (32, 32)
    batch = frames(3, 32, 32, seed=2)
    reference = encoder.image_processor(images=list(batch), return_tensors="pt", input_data_format="channels_last").pixel_values
    torch.testing.assert_close(encoder.preprocess_images(batch), reference, atol=1e-5, rtol=0)
