"""SigLIP loading and embedding, on the tiny untrained model: offline, real components, no mocks.

The tiny model's numbers are meaningless; these tests check shapes, batching,
preprocessing and identity, never accuracy.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from actalign.caveats import UNTRAINED_BANNER, UNTRAINED_MARKER
from actalign.errors import InputError, ModelNotFoundError
from actalign.models import DEFAULT_BATCH_SIZE, Encoder, choose_device, clear_encoder_cache, load_encoder
from actalign.registry import REGISTRY, ModelNotLocalError, hub_reachable, read_identity
from actalign.tiny_model import tiny_random_path


@pytest.fixture(scope="module", autouse=True)
def offline_cache(tmp_path_factory: pytest.TempPathFactory):
    """Private model cache and no hub for this module; restored afterwards so other modules are unaffected."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ACTALIGN_CACHE", str(tmp_path_factory.mktemp("actalign_cache")))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        clear_encoder_cache()  # an encoder loaded by another module may point into another cache
        yield
        clear_encoder_cache()


@pytest.fixture(scope="module")
def tiny_dir(offline_cache) -> Path:
    return tiny_random_path()


@pytest.fixture(scope="module")
def enc(tiny_dir: Path) -> Encoder:
    return load_encoder("tiny-random", batch_size=3)  # 3 divides neither 7 nor 5: ragged last batch


def frames(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, height, width, 3), dtype=np.uint8)


def test_registry_and_banner():
    assert REGISTRY["siglip-so400m"].source == "google/siglip-so400m-patch14-384"
    assert REGISTRY["siglip-base"].source == "google/siglip-base-patch16-224"
    assert REGISTRY["tiny-random"].trained is False
    assert "\n" not in UNTRAINED_BANNER and "meaningless" in UNTRAINED_BANNER


def test_tiny_model_is_built_once(tiny_dir: Path):
    config = tiny_dir / "config.json"
    built_at = config.stat().st_mtime_ns
    assert tiny_random_path() == tiny_dir
    assert config.stat().st_mtime_ns == built_at
    assert (tiny_dir / UNTRAINED_MARKER).is_file()
    assert not list(tiny_dir.parent.glob(".tiny-random-v1.tmp-*")), "temporary build folder left behind"


def test_tiny_model_loads_through_from_pretrained(enc: Encoder, tiny_dir: Path):
    assert type(enc.model).__name__ == "SiglipModel"
    assert enc.model.name_or_path == str(tiny_dir)
    assert type(enc.tokenizer).__name__ == "SiglipTokenizer"
    assert enc.identity.trained is False
    assert enc.identity.ref == "tiny-random" and enc.identity.model_id == "tiny-random"
    assert (enc.device, enc.identity.dtype_name, enc.batch_size) == ("cpu", "float32", 3)
    assert enc.image_size == (32, 32) and enc.embed_dim == 32 and enc.text_max_length == 64


def test_logit_parameters_come_from_the_checkpoint(enc: Encoder, tiny_dir: Path):
    weights = load_file(tiny_dir / "model.safetensors")
    assert enc.identity.logit_scale == pytest.approx(weights["logit_scale"].item())
    assert enc.identity.logit_bias == pytest.approx(weights["logit_bias"].item())
    assert enc.identity.logit_scale != 0.0  # the random init zeroes it; the build sets a real-looking value


def test_identity_is_read_from_the_files_exactly_as_loading_finds_it(enc: Encoder, tiny_dir: Path):
    """`status` plans with the identity read from the folder; the keys it computes must be the run's."""
    assert read_identity("tiny-random") == enc.identity
    assert read_identity(str(tiny_dir)) == load_encoder(str(tiny_dir), batch_size=3).identity
    assert read_identity("tiny-random", "bfloat16") == load_encoder("tiny-random", batch_size=3, bf16=True).identity


def test_identity_of_a_model_not_on_this_machine_says_what_a_run_would_do(tiny_dir: Path):
    with pytest.raises(ModelNotLocalError, match="Hugging Face cache"):
        read_identity("google/siglip-base-patch16-224", revision="main")
    with pytest.raises(InputError, match="--revision"):
        read_identity("tiny-random", revision="v1")


def test_a_hub_revision_is_part_of_the_model_id(tmp_path: Path, tiny_dir: Path, monkeypatch: pytest.MonkeyPatch):
    """A model in the Hugging Face cache layout: the revision names the snapshot and is part of the key."""
    hub = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))  # read at call time
    repo = hub / "models--local--tiny-siglip"
    for commit, ref in (("a" * 40, "main"), ("b" * 40, "v2")):
        shutil.copytree(tiny_dir, repo / "snapshots" / commit)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    (repo / "snapshots" / ("b" * 40) / "config.json").write_text((tiny_dir / "config.json").read_text() + " ")
    main, v2 = read_identity("local/tiny-siglip"), read_identity("local/tiny-siglip", revision="v2")
    assert (main.model_id, v2.model_id) == ("local/tiny-siglip", "local/tiny-siglip@v2")
    assert main.fingerprint != v2.fingerprint and v2.revision == "v2"
    assert load_encoder("local/tiny-siglip", revision="v2", batch_size=3).identity == v2


@pytest.mark.parametrize("size", [(32, 32), (45, 61)], ids=["at_image_size", "resized"])
def test_embed_images_batches_equal_one_by_one(enc: Encoder, size: tuple[int, int]):
    batch = frames(7, *size)
    emb = enc.embed_images(batch)
    assert emb.shape == (7, enc.embed_dim) and emb.dtype == np.float32
    assert np.isfinite(emb).all()
    one_by_one = np.concatenate([enc.embed_images(batch[i : i + 1]) for i in range(len(batch))])
    np.testing.assert_allclose(emb, one_by_one, atol=1e-5, rtol=0)


def test_empty_inputs_give_empty_embeddings(enc: Encoder):
    assert enc.embed_images(frames(0, 32, 32)).shape == (0, enc.embed_dim)
    assert enc.embed_texts([]).shape == (0, enc.embed_dim)


def test_bad_inputs_are_refused(enc: Encoder):
    with pytest.raises(ValueError, match="uint8"):
        enc.embed_images(frames(2, 32, 32).astype(np.float32))
    with pytest.raises(ValueError, match="uint8"):
        enc.embed_images(frames(2, 32, 32)[..., :2])
    with pytest.raises(ValueError, match="sequence of strings"):
        enc.embed_texts("a bare string")


def test_torch_normalisation_equals_the_image_processor(enc: Encoder):
    batch = frames(5, 32, 32, seed=1)
    ours = enc.preprocess_images(batch)
    reference = enc.image_processor(images=list(batch), return_tensors="pt", input_data_format="channels_last")
    assert ours.shape == reference.pixel_values.shape == (5, 3, 32, 32)
    torch.testing.assert_close(ours, reference.pixel_values, atol=1e-5, rtol=0)


def test_text_is_padded_to_max_length_and_batch_independent(enc: Encoder):
    short, long_text = "a gymnast flips", " ".join(["the swimmer dives into the pool"] * 100)
    assert enc.tokenize([short])["input_ids"].shape == enc.tokenize([long_text])["input_ids"].shape == (1, 64)
    texts = [short, long_text, "a red circle beside a blue square", "boxing", "qwxz unseen wörds 123"]
    emb = enc.embed_texts(texts)
    assert emb.shape == (5, enc.embed_dim) and emb.dtype == np.float32 and np.isfinite(emb).all()
    np.testing.assert_allclose(emb[0], enc.embed_texts([short])[0], atol=1e-5, rtol=0)
    np.testing.assert_allclose(emb[4], enc.embed_texts(texts[4:])[0], atol=1e-5, rtol=0)


def test_cache_and_fingerprint(enc: Encoder, tiny_dir: Path):
    assert load_encoder("tiny-random", batch_size=3) is enc
    default = load_encoder("tiny-random")
    assert default is not enc and default.batch_size == DEFAULT_BATCH_SIZE["cpu"] == 32
    assert len(enc.identity.fingerprint) == 16 and set(enc.identity.fingerprint) <= set("0123456789abcdef")

    clear_encoder_cache()
    reloaded = load_encoder("tiny-random", batch_size=3)
    assert reloaded is not enc and reloaded.identity.fingerprint == enc.identity.fingerprint


def test_fingerprint_follows_the_checkpoint_not_its_folder(tiny_dir: Path, tmp_path: Path):
    """Stage keys carry the fingerprint: the same files elsewhere, with new times, keep it (cached results are
    reused); a changed config or re-saved weights change it (results are recomputed). Weights are recognised by
    their files' names and sizes, never read whole."""
    copy = tmp_path / "copy"
    shutil.copytree(tiny_dir, copy)
    for path in copy.iterdir():
        os.utime(path, (time.time() + 60, time.time() + 60))
    original = read_identity(str(tiny_dir)).fingerprint
    assert read_identity(str(copy)).fingerprint == original

    weights = load_file(copy / "model.safetensors")
    save_file({name: tensor.half() for name, tensor in weights.items()}, copy / "model.safetensors")  # re-saved in half precision
    half = read_identity(str(copy)).fingerprint
    assert half != original
    save_file({**weights, "extra.weight": torch.zeros(4)}, copy / "model.safetensors")  # a tensor added
    assert read_identity(str(copy)).fingerprint not in (original, half)

    shutil.copy(tiny_dir / "model.safetensors", copy / "model.safetensors")  # the original weights again
    assert read_identity(str(copy)).fingerprint == original
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "initializer_factor": 2 * config["initializer_factor"]}))
    assert read_identity(str(copy)).fingerprint != original


def test_concurrent_loads_share_one_encoder(tiny_dir: Path):
    with ThreadPoolExecutor(4) as pool:
        loaded = list(pool.map(lambda _: load_encoder("tiny-random", batch_size=5), range(4)))
    assert all(encoder is loaded[0] for encoder in loaded)


def test_local_folder_works_as_model(enc: Encoder, tiny_dir: Path):
    by_path = load_encoder(str(tiny_dir), batch_size=3)
    assert by_path.identity.model_id == str(tiny_dir.resolve()) and by_path.identity.ref == str(tiny_dir)
    assert by_path.identity.trained is False  # from the ACTALIGN_UNTRAINED marker, not from the registry
    assert by_path.identity.fingerprint == enc.identity.fingerprint
    batch = frames(4, 32, 32, seed=2)
    np.testing.assert_allclose(by_path.embed_images(batch), enc.embed_images(batch), atol=1e-6, rtol=0)


def test_unknown_name_lists_the_registry():
    with pytest.raises(ModelNotFoundError, match="siglip-so400mm") as info:
        load_encoder("siglip-so400mm")
    assert all(name in str(info.value) for name in REGISTRY)


def test_bad_folder_is_model_not_found(tmp_path: Path):
    with pytest.raises(ModelNotFoundError, match=str(tmp_path)):
        load_encoder(str(tmp_path))  # exists, but holds no checkpoint


def test_hub_id_offline_fails_fast_with_advice():
    start = time.monotonic()
    with pytest.raises(ModelNotFoundError) as info:
        load_encoder("google/siglip-does-not-exist")
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert "google/siglip-does-not-exist" in message and "tiny-random" in message and "offline" in message


def test_hub_reachable_is_false_offline():
    start = time.monotonic()
    assert hub_reachable(timeout_s=1.0) is False
    assert time.monotonic() - start < 1.0


def test_choose_device():
    assert choose_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert choose_device("cpu") == "cpu"
    with pytest.raises(InputError, match="tpu"):
        choose_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            choose_device("cuda")


def test_bf16_autocast_runs_on_cpu_and_is_close(enc: Encoder):
    half = load_encoder("tiny-random", batch_size=3, bf16=True)
    assert half.identity.dtype_name == "bfloat16"
    batch = frames(5, 32, 32, seed=3)
    for full_emb, half_emb in (
        (enc.embed_images(batch), half.embed_images(batch)),
        (enc.embed_texts(["a diver", "a red star"]), half.embed_texts(["a diver", "a red star"])),
    ):
        assert half_emb.dtype == np.float32
        cosine = (full_emb * half_emb).sum(1) / np.linalg.norm(full_emb, axis=1) / np.linalg.norm(half_emb, axis=1)
        assert (cosine > 0.99).all()


BUILD_ONCE = """
import sys, time
from pathlib import Path
from actalign.builtin_models import built_model_path

def build(folder: Path) -> None:
    with open(sys.argv[1], "a") as log:
        log.write("built\\n")
    time.sleep(1.0)  # long enough for the other process to ask meanwhile
    (folder / "DONE").write_text("")

print(built_model_path("slow-model", "DONE", build))
"""


def test_two_processes_asking_for_a_built_model_build_it_once(tmp_path: Path):
    """Two `actalign demo` at once on a fresh machine must not both train the toy model for minutes."""
    log = tmp_path / "builds.log"
    env = {**os.environ, "ACTALIGN_CACHE": str(tmp_path / "cache")}
    askers = [subprocess.Popen([sys.executable, "-c", BUILD_ONCE, str(log)], env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    folders = {asker.communicate(timeout=120)[0].strip() for asker in askers}
    assert [asker.returncode for asker in askers] == [0, 0]
    assert folders == {str(tmp_path / "cache" / "models" / "slow-model")}
    assert log.read_text() == "built\n"
    assert not [p.name for p in (tmp_path / "cache" / "models").iterdir() if ".tmp-" in p.name]
