"""Save and load trained forecasters with their provenance; refuse a mismatched artifact.

An artifact is two files: ``NAME.pkl`` (the pickled forecaster) and ``NAME.json`` (provenance:
library versions, features, fit window, fit time, and the pickle's SHA-256). The JSON is read
first, so a model made by another scikit-learn or for other features is refused with a clear
error before any unpickling. Pickles execute code when loaded: keep the state directory private
to the daemon's user (the systemd unit and the container both do).

A checksum only proves the two files belong together, not that they hold a model: loading
checks every field and proves the model predicts before it is used. An artifact refused for
any reason but absence is moved aside by ``quarantine`` (the caller does it, and retrains).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import pickle
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from models.errors import ArtifactMismatchError, CorruptArtifactError, MissingArtifactError
from models.estimator import PeakQuantileRegressor
from models.features import FEATURE_NAMES, FeatureSpec
from models.forecaster import GradientBoostingPeak, Provenance

FORMAT_VERSION = 1
# A quarantined artifact is the directory ``<name>.quarantined-<UTC time>`` beside the others.
QUARANTINE_MARK = ".quarantined-"
QUARANTINE_KEEP = 3


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
    """Load an artifact made for ``spec`` by these library versions, or raise why not.

    Everything is checked before the model is returned, so that a model that loads is one
    that forecasts: the metadata's shape and types, the checksum, the provenance against this
    process, the unpickled object's type, and one prediction on a row of the features' width.
    ``MissingArtifactError`` when there is no artifact; ``ArtifactMismatchError`` (or its
    subclass ``CorruptArtifactError``) for every other refusal. Never raises anything else.
    """
    meta_path, payload_path = directory / f"{name}.json", directory / f"{name}.pkl"
    try:
        raw_meta = meta_path.read_bytes()
        payload = payload_path.read_bytes()
    except FileNotFoundError as error:
        raise MissingArtifactError(f"no model artifact at {error.filename}") from error
    except OSError as error:
        raise CorruptArtifactError(f"unreadable model artifact {meta_path}: {error}") from error
    meta = _meta(raw_meta, meta_path)
    if meta.get("format") != FORMAT_VERSION:
        raise ArtifactMismatchError(
            f"model artifact {meta_path} has format {meta.get('format')!r:.40}, "
            f"expected {FORMAT_VERSION}"
        )
    if hashlib.sha256(payload).hexdigest() != meta.get("sha256"):
        raise ArtifactMismatchError(f"model artifact {payload_path} does not match its checksum")
    provenance = _provenance(meta.get("provenance"), meta_path)
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
    regressor = _unpickle(payload, payload_path)
    return GradientBoostingPeak(regressor=regressor, provenance=provenance)


def _meta(raw: bytes, path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        raise CorruptArtifactError(f"model artifact {path} is not JSON: {error}") from error
    if not isinstance(meta, dict):
        raise CorruptArtifactError(
            f"model artifact {path} holds a JSON {type(meta).__name__}, not an object"
        )
    return meta


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _provenance(raw: object, path: Path) -> Provenance:
    """The provenance of a metadata file, every field present and of its type, or why not."""
    if not isinstance(raw, dict):
        raise CorruptArtifactError(
            f"model artifact {path} has no provenance (found {type(raw).__name__})"
        )
    declared = {field.name: field for field in dataclasses.fields(Provenance)}
    unknown = sorted(set(raw) - set(declared))
    if unknown:
        raise CorruptArtifactError(f"model artifact {path}: unknown provenance fields {unknown}")
    fields: dict[str, Any] = {}
    for key, field in declared.items():
        has_default = field.default is not dataclasses.MISSING
        if key not in raw:
            if has_default:
                continue
            raise CorruptArtifactError(f"model artifact {path}: provenance has no {key!r}")
        fields[key] = _provenance_field(key, raw[key], path)
    return Provenance(**fields)


def _provenance_field(key: str, value: Any, path: Path) -> Any:
    def bad(expected: str) -> CorruptArtifactError:
        return CorruptArtifactError(
            f"model artifact {path}: provenance {key} is {value!r:.60}, expected {expected}"
        )

    if key == "feature_names":
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise bad("a list of names")
        return tuple(value)
    if key == "fit_window":
        if not isinstance(value, list) or len(value) != 2 or not all(map(_number, value)):
            raise bad("two times")
        return (float(value[0]), float(value[1]))
    if key in ("lead_steps", "train_rows"):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise bad("a count")
        return value
    if key in ("sklearn_version", "numpy_version", "python_version"):
        if not isinstance(value, str):
            raise bad("a version")
        return value
    if not _number(value):
        raise bad("a number")
    return float(value)


def _unpickle(payload: bytes, path: Path) -> PeakQuantileRegressor:
    """The regressor in ``payload``, proved able to predict one row, or why not."""
    try:
        # Trusted: written by this daemon into its private state directory, checksum verified.
        regressor = pickle.loads(payload)
    except Exception as error:  # a broken pickle raises nearly anything
        raise CorruptArtifactError(
            f"model artifact {path} is not a readable pickle: {error!r:.200}"
        ) from error
    if not isinstance(regressor, PeakQuantileRegressor):
        raise CorruptArtifactError(
            f"model artifact {path} holds a {type(regressor).__name__}, "
            f"not a {PeakQuantileRegressor.__name__}"
        )
    width = len(FEATURE_NAMES)
    try:
        # A fresh row and one with every feature missing (as at the start of a history).
        rows = np.vstack((np.zeros(width), np.full(width, np.nan)))
        prediction = np.asarray(regressor.predict(rows), dtype=np.float64)
    except Exception as error:
        raise CorruptArtifactError(
            f"model artifact {path} cannot predict a row of {width} features: {error!r:.200}"
        ) from error
    if prediction.shape != (2,) or not np.all(np.isfinite(prediction)):
        raise CorruptArtifactError(
            f"model artifact {path} predicted {prediction!r:.80} for two rows of features"
        )
    return regressor


def quarantine(directory: Path, name: str, *, now: float) -> Path | None:
    """Move the artifact ``name`` (whichever of its two files exist) out of the way.

    Both files go into ``directory/<name>.quarantined-<UTC time>/``, kept for a post-mortem
    and never loaded again; only the newest ``QUARANTINE_KEEP`` per name are kept, so a model
    that keeps failing cannot fill the disk. Returns the new directory, or None when there
    was nothing to move. ``OSError`` if the files cannot be moved.
    """
    files = (directory / f"{name}.pkl", directory / f"{name}.json")
    present = [path for path in files if path.exists()]
    if not present:
        return None
    stamp = datetime.fromtimestamp(now, tz=UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    target = directory / f"{name}{QUARANTINE_MARK}{stamp}"
    suffix = 1
    while target.exists():
        target = directory / f"{name}{QUARANTINE_MARK}{stamp}-{suffix}"
        suffix += 1
    target.mkdir(mode=0o700)
    for path in present:
        os.replace(path, target / path.name)
    for old in quarantined(directory, name)[:-QUARANTINE_KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def quarantined(directory: Path, name: str) -> list[Path]:
    """The quarantined copies of artifact ``name``, oldest first."""
    if not directory.is_dir():
        return []
    prefix = f"{name}{QUARANTINE_MARK}"
    found = [path for path in directory.iterdir() if path.name.startswith(prefix)]
    return sorted(found, key=lambda path: path.name)
