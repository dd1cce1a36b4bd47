"""actalign core: zero-shot action classification by script-to-video alignment.

This package is the Prefect-free core (model loading, decoding, scripts,
scorers). ``flows/`` and ``tasks/`` orchestrate it; nothing here imports them.
"""

__version__ = "0.1.0"
