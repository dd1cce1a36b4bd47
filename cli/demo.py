"""``actalign demo``: make the demo's inputs and pick a model that can actually be loaded here."""

from __future__ import annotations

import os
from pathlib import Path

from rich.markup import escape

from actalign.cli.display import console, working
from actalign.cli.environment import quiet_libraries
from actalign.demo_data import DEMO_SETS, make_demo_dataset
from actalign.errors import ModelNotFoundError
from actalign.registry import built_here, hub_reachable

OFFLINE_MODEL = "toy-shapes"


def prepare_demo_input(workdir: Path, videos_per_class: int, demo_set: str) -> tuple[Path, Path]:
    """Generate the demo videos of ``demo_set`` (once) and return (manifest, classes file)."""
    dest = workdir / "demo-input" / demo_set
    manifest, classes = make_demo_dataset(dest, videos_per_class=videos_per_class, demo_set=demo_set)
    n_videos = len(list((dest / "videos").glob("*.mp4")))
    console.print(f"demo input ({demo_set}: {DEMO_SETS[demo_set].description}): {n_videos} generated videos and 6 classes in", highlight=False)
    console.print(str(dest), highlight=False, soft_wrap=True)
    return manifest, classes


def loadable_model(model: str) -> str:
    """The requested model when it loads (from the hub or the local cache), else toy-shapes, said plainly."""
    if built_here(model):
        return model
    reachable = hub_reachable()
    if not reachable:
        # Without the hub only a cached copy can load; offline mode makes that check fast instead of hanging.
        os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        with working(f"loading model {model} ..."):
            from actalign.models import load_encoder

            quiet_libraries()
            load_encoder(model)
        return model
    except ModelNotFoundError as exc:
        reason = str(exc) if reachable else "the Hugging Face hub cannot be reached from here and no copy is cached"
        console.print(
            f"[bold yellow]The model {escape(repr(model))} cannot be loaded: {escape(reason)}.[/]\n"
            f"Running the demo with {OFFLINE_MODEL}, a small SigLIP trained here on generated shapes only "
            "(2 to 3 minutes the first time, then cached): it shows what the method does on the demo's shapes, "
            "and knows nothing of real video. On a machine with internet the demo uses a real SigLIP.",
            highlight=False,
            markup=True,
        )
        return OFFLINE_MODEL
