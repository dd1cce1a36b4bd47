"""Before any work: read and validate the inputs and find the model, or say what is wrong."""

from __future__ import annotations

from typing import TYPE_CHECKING

from actalign.cli.display import console, print_error, print_model_banner, working
from actalign.cli.environment import quiet_libraries
from actalign.config import RunConfig
from actalign.errors import InputError

if TYPE_CHECKING:
    from actalign.inputs import Inputs
    from actalign.registry import ModelIdentity


def preflight(config: RunConfig, credentials: bool = True) -> tuple[Inputs, ModelIdentity] | None:
    """(inputs, the model's identity), with its banner when it has one; None after printing the input error.

    ``credentials``: also check the script provider's API key (a run needs it, a status does not).
    """
    try:
        with working("reading the inputs ..."):
            from actalign.inputs import load_inputs, read_inputs
            from actalign.registry import fetch_identity

            inputs = load_inputs(config) if credentials else read_inputs(config)
        console.print(f"{len(inputs.videos)} videos, {len(inputs.classes)} classes", highlight=False)
        with working(f"finding model {config.model} ..."):
            quiet_libraries()
            model = fetch_identity(config)
    except InputError as exc:
        print_error(str(exc))
        return None
    print_model_banner(model.caveat)
    return inputs, model
