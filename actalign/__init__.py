"""actalign core: zero-shot action classification by script-to-video alignment.

The modules of this folder are the Prefect-free core (model loading, decoding,
scripts, scorers). The repository's ``flows/``, ``tasks/``, ``storage/``,
``queries/`` and ``cli/`` install as ``actalign.flows`` and so on (pyproject's
package-dir mapping); they use the core, and the core imports none of them.

The Python API (``actalign.run``, ``actalign.open_workdir``, ``actalign.Results``)
lives in ``actalign.api`` and is imported on first use, so that ``import actalign``
loads no torch, transformers, Prefect or DuckDB.
"""

import os
from typing import TYPE_CHECKING

# OpenMP threads (torch's) that finish a parallel region sleep rather than spin for a while: spinning, they
# took the cores from the decoders that feed the encoder (``actalign.threads`` says who gets which threads).
# Read once, when torch loads its OpenMP runtime; a value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

if TYPE_CHECKING:
    from actalign.api import Results, open_workdir, run

__version__ = "0.1.0"

__all__ = ["Results", "open_workdir", "run"]


def __getattr__(name: str) -> object:
    """The API's names, imported from ``actalign.api`` on first access (PEP 562)."""
    if name in __all__:
        from actalign import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
