"""``actalign demo``: make the demo's inputs and pick a model that can actually be loaded here."""

from __future__ import annotations

import os
from pathlib import Path

from actalign.demo_data import make_demo_dataset
from actalign.errors import ModelNotFoundError
from actalign.models import hub_reachable, load_encoder
from cli.display import console


def prepare_demo(workdir: Path, model: str, videos_per_class: int) -> tuple[Path, Path, str]:
    """Generate the demo videos (once) and return (manifest, classes file, model to use)."""
    dest = workdir / "demo-input"
    manifest, classes = make_demo_dataset(dest, videos_per_class=videos_per_class)
    console.print(f"demo input: {len(list((dest / 'videos').glob('*.mp4')))} generated videos and 6 classes in {dest}")
    return manifest, classes, _loadable_model(model)


def _loadable_model(model: str) -> str:
    """The requested model when it loads (from the hub or the local cache), else tiny-random, said plainly."""
    if model == "tiny-random":
        return model
    reachable = hub_reachable()
    if not reachable:
        # Without the hub only a cached copy can load; offline mode makes that check fast instead of hanging.
        os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        load_encoder(model)
        return model
    except ModelNotFoundError as exc:
        reason = str(exc) if reachable else "the Hugging Face hub cannot be reached from here and no copy is cached"
        console.print(
            f"[bold yellow]The model {model!r} cannot be loaded: {reason}.[/]\n"
            "Running the demo with tiny-random, a tiny UNTRAINED model: the pipeline runs end to end, "
            "but its accuracy numbers are meaningless. On a machine with internet the demo uses a real SigLIP.",
            highlight=False,
        )
        return "tiny-random"
