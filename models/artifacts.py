"""Save and load trained forecasters with their provenance; refuse a mismatched artifact.

An artifact is two files: ``NAME.pkl`` (the pickled forecaster) and ``NAME.json`` (provenance:
library versions, features, fit window, fit time, and the pickle's SHA-256). The JSON is read
first, so a model made by another scikit-learn or for other features is refused with a clear
error before any unpickling. Pickles execute code when loaded: keep the state directory private
to the daemon's user (the systemd unit and the container both do).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

from models.errors import ArtifactMismatchError, ModelError
from models.features import FEATURE_NAMES, FeatureSpec
from models.forecaster import GradientBoostingPeak, Provenance

FORMAT_VERSION = 1


def _atomic_write(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so a crash never leaves half an artifact."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def save_model(model: GradientBoostingPeak, directory: Path, name: str) -> Path:
    """Write ``name.pkl`` and ``name.json`` under ``directory``; returns the JSON's path."""
    payload = pickle.dumps(model.regressor, protocol=pickle.HIGHEST_PROTOCOL)
    meta = {
        "format": FORMAT_VERSION,
        "sha256": hashlib.sha256(payload).hexdigest(),
        "provenance": dataclasses.asdict(model.provenance),
    }
    _atomic_write(directory / f"{name}.pkl", payload)
    meta_path = directory / f"{name}.json"
    _atomic_write(meta_path, json.dumps(meta, indent=2).encode())
    return meta_path


def _check(provenance: Provenance, spec: FeatureSpec, current: Provenance) -> None:
    expected = {
        "sklearn_version": current.sklearn_version,
        "numpy_version": current.numpy_version.split(".")[0],
        "feature_names": FEATURE_NAMES,
        "step_s": spec.step_s,
        "lead_steps": spec.lead_steps,
        "scale": spec.scale,
    }
    found = {
        "sklearn_version": provenance.sklearn_version,
        "numpy_version": provenance.numpy_version.split(".")[0],
        "feature_names": provenance.feature_names,
        "step_s": provenance.step_s,
        "lead_steps": provenance.lead_steps,
        "scale": provenance.scale,
    }
    for key, value in expected.items():
        if found[key] != value:
            raise ArtifactMismatchError(
                f"model artifact was made with {key}={found[key]!r}, this process uses "
                f"{value!r}: it will be retrained"
            )


def load_model(directory: Path, name: str, spec: FeatureSpec) -> GradientBoostingPeak:
    """Load an artifact made for ``spec`` by these library versions, or raise why not."""
    meta_path, payload_path = directory / f"{name}.json", directory / f"{name}.pkl"
    try:
        meta: dict[str, Any] = json.loads(meta_path.read_text(encoding="utf-8"))
        payload = payload_path.read_bytes()
    except FileNotFoundError as error:
        raise ModelError(f"no model artifact at {error.filename}") from error
    except (OSError, ValueError) as error:
        raise ModelError(f"unreadable model artifact {meta_path}: {error}") from error
    if meta.get("format") != FORMAT_VERSION:
        raise ArtifactMismatchError(
            f"model artifact {meta_path} has format {meta.get('format')!r}, "
            f"expected {FORMAT_VERSION}"
        )
    if hashlib.sha256(payload).hexdigest() != meta.get("sha256"):
        raise ArtifactMismatchError(f"model artifact {payload_path} does not match its checksum")
    fields = dict(meta["provenance"])
    fields["feature_names"] = tuple(fields["feature_names"])
    fields["fit_window"] = tuple(fields["fit_window"])
    try:
        provenance = Provenance(**fields)
    except TypeError as error:
        raise ArtifactMismatchError(f"model artifact {meta_path}: {error}") from error
    current = Provenance(
        feature_names=FEATURE_NAMES,
        step_s=spec.step_s,
        lead_steps=spec.lead_steps,
        scale=spec.scale,
        quantile=provenance.quantile,
        fit_window=provenance.fit_window,
        fitted_at=provenance.fitted_at,
        train_rows=provenance.train_rows,
    )
    _check(provenance, spec, current)
    regressor = pickle.loads(payload)  # trusted: written by this daemon, checksum verified
    return GradientBoostingPeak(regressor=regressor, provenance=provenance)
