"""Errors of the forecasting package (re-exported by ``daemon.errors``)."""

from __future__ import annotations


class ModelError(Exception):
    """A model cannot be trained, loaded or used."""


class ArtifactMismatchError(ModelError):
    """A saved model was made by other library versions or features than this process uses."""
