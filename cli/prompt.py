"""`actalign prompt publish`: announce a changed prompt template to the Prefect server.

The event starts the deployments whose trigger expects it (prefect.yaml: on-prompt-change).
The run itself needs nothing from the event: a changed template file has a new hash, so
re-running the same configuration regenerates exactly the scripts written with it.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated

import typer

from actalign.cli.display import console, print_error
from actalign.cli.environment import PREFECT_DEFAULTS
from actalign.errors import InputError
from actalign.llm.prompts import PromptTemplate, load_template

PUBLISHED_EVENT = "actalign.prompt.published"
RESOURCE_PREFIX = "actalign.prompt."

prompt_app = typer.Typer(help="Prompt templates: publish a changed one to trigger the deployments that use it.", no_args_is_help=True)


@prompt_app.command()
def publish(
    template: Annotated[str, typer.Argument(help="A template name (context-rich, short-fixed) or a path to a template .yaml.")],
) -> None:
    """Validate a prompt template, then emit the `actalign.prompt.published` Prefect event (name, path, hash)
    to the server in PREFECT_API_URL; deployments triggered by it start a run."""
    try:
        loaded = load_template(template)
    except InputError as exc:
        print_error(str(exc))
        raise typer.Exit(2) from exc
    for name, value in PREFECT_DEFAULTS.items():  # not PREFECT_HOME: the user's profile may name the server
        os.environ.setdefault(name, value)
    from prefect.settings import PREFECT_API_URL

    api_url = PREFECT_API_URL.value()
    if not api_url:
        print_error("set PREFECT_API_URL to the Prefect server whose deployments should react, e.g. http://127.0.0.1:4200/api")
        raise typer.Exit(2)
    path = Path(loaded.path)
    try:
        event_id = asyncio.run(_emit(loaded, path))
    except Exception as exc:  # the server is down or refused the event: nothing was published
        print_error(f"could not publish to {api_url}: {type(exc).__name__}: {exc}")
        raise typer.Exit(1) from exc
    console.print(
        f"emitted {PUBLISHED_EVENT} (id {event_id}) for {RESOURCE_PREFIX}{loaded.name}: "
        f"{loaded.label}, hash {loaded.template_hash}, {path} -> {api_url}",
        highlight=False,
    )


async def _emit(template: PromptTemplate, path: Path) -> str:
    """Send the event and wait for the server to confirm it (a ping after the send), unlike
    ``emit_event``, whose background queue may still hold it when a short process exits."""
    from prefect.events import Event
    from prefect.events.clients import get_events_client

    event = Event(
        event=PUBLISHED_EVENT,
        resource={
            "prefect.resource.id": f"{RESOURCE_PREFIX}{template.name}",
            "prefect.resource.name": template.name,
            "actalign.prompt.version": str(template.version),
            "actalign.prompt.hash": template.template_hash,
        },
        payload={"name": template.name, "version": template.version, "path": str(path), "template_hash": template.template_hash},
    )
    async with get_events_client(reconnection_attempts=2, checkpoint_every=1) as client:
        await client.emit(event)
    return str(event.id)
