"""The base every settings model shares: frozen, strict about keys, helpful about typos."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic_core import PydanticCustomError

# The error type the loader recognises: ``ctx`` carries a path below the failing model and the
# reason, so a cross-field check can blame ``max_units`` rather than the whole target.
FIELD_ERROR = "elasticd_field"


def field_error(field: str, reason: str) -> PydanticCustomError:
    """An error about ``field``: a path below the model raising it (``schedules[0].cron``), or
    ``""`` for the model as a whole."""
    return PydanticCustomError(FIELD_ERROR, "{field}: {reason}", {"field": field, "reason": reason})


class SettingsModel(BaseModel):
    """Frozen (settings are validated once and then shared) and closed to unknown keys."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_keys(cls, data: Any) -> Any:
        # pydantic's own extra="forbid" error cannot suggest a fix; a typo'd key is the most
        # common config mistake, so name the closest valid key. extra="forbid" stays for the
        # JSON schema (additionalProperties: false).
        if not isinstance(data, Mapping):
            return data
        known = [field.alias or name for name, field in cls.model_fields.items()]
        for key in data:
            if key not in known:
                raise field_error(str(key), unknown_key_reason(str(key), known))
        return data


def unknown_key_reason(key: str, known: list[str]) -> str:
    """``unknown key; did you mean 'x'?`` or, with no close match, the list of valid keys."""
    return "unknown key; " + suggest(key, known)


def suggest(word: str, known: list[str]) -> str:
    """``did you mean 'x'?`` for the closest of ``known``, else the list of them."""
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    return "expected one of " + ", ".join(repr(name) for name in sorted(known))
