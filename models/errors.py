"""Errors of the forecasting package (re-exported by ``daemon.errors``)."""

from __future__ import annotations


class ModelError(Exception):
    """A model cannot be trained, loaded or used."""


class MissingArtifactError(ModelError):
    """No saved model exists under that name: nothing to load, nothing to quarantine."""


class ArtifactMismatchError(ModelError):
    """A saved model was made by other library versions or features than this process uses."""


class CorruptArtifactError(ArtifactMismatchError):
    """A saved model cannot be read or used: malformed provenance, a broken or truncated
    pickle, an object of the wrong type, or one that cannot predict a row of features.

    A subclass of ``ArtifactMismatchError`` so that callers refusing a mismatch refuse this
    too."""
