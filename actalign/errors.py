"""Error types shared by every stage.

Two families, because they are handled differently:
``InputError`` stops a run before any work (a bad manifest, an unknown model);
``ItemError`` fails one item (a video, a class) and becomes a ``failed`` status
row while the other items carry on. ``error_class`` is what the status row
records, so users can group failures in SQL.
"""

from __future__ import annotations


class ActAlignError(Exception):
    """Base class of every error this project raises on purpose."""


class InputError(ActAlignError):
    """Bad user input that makes the whole run meaningless; raised before work starts."""


class ModelNotFoundError(InputError):
    """A model name, Hugging Face id or folder that cannot be loaded."""


class ItemError(ActAlignError):
    """A problem with one item (one video, one class); the run carries on without it."""

    @property
    def error_class(self) -> str:
        return type(self).__name__


class VideoNotFoundError(ItemError):
    """The video file does not exist or cannot be read."""


class VideoDecodeError(ItemError):
    """The container or codec cannot be decoded, or no frame could be decoded."""


class SegmentOutOfRangeError(ItemError):
    """The requested [start, end) segment lies outside the video."""
