"""`actalign models`: the registry, with each model's family, input size, default calibration and whether it is here.

Reads the registry and the caches only: no torch, transformers or Prefect, and nothing is built or downloaded.
"""

from __future__ import annotations

from actalign.calibration import default_for
from actalign.cli.display import print_result
from actalign.queries.runner import Result
from actalign.registry import DEFAULT_MODEL, REGISTRY, ModelNotLocalError, local_folder, resolve


def models() -> None:
    """List the models `--model` accepts by name (any Hugging Face id or folder of a SigLIP, SigLIP 2 or CLIP works too)."""
    rows = [
        (
            f"{spec.name} (default)" if spec.name == DEFAULT_MODEL else spec.name,
            spec.family,
            f"{spec.input_size} px",
            default_for(spec.family),
            "yes" if is_local(spec.name) else "no",
            spec.description,
        )
        for spec in REGISTRY.values()
    ]
    print_result(Result(["model", "family", "input", "calibration", "local", "description"], rows), title="models (docs/models.md)")


def is_local(name: str) -> bool:
    """True when the model's files are on this machine (built here, or in the Hugging Face cache)."""
    try:
        local_folder(resolve(name, build=False))
    except ModelNotLocalError:
        return False
    return True
