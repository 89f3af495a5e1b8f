"""The two ways loading a model fails that a user can fix: wrong name/path, or unsupported model.

Both subclass ValueError so callers that validate configuration can catch them as bad input.
"""

from __future__ import annotations


class ModelNotFoundError(ValueError):
    """No model could be found for the given name or path (the message says what was looked for)."""


class UnsupportedModelError(ValueError):
    """The model was found but its architecture or file format is not one the engine runs."""
