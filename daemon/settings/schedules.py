"""Planned capacity: recurring schedule windows and one-off overrides."""

from __future__ import annotations

import zoneinfo
from typing import Self

from croniter import croniter
from pydantic import AwareDatetime, Field, field_validator, model_validator

from daemon.settings.base import SettingsModel, field_error
from daemon.settings.quantities import PositiveDuration

_UNITS_DOC = "while active; null leaves the target's own value"


class _Bounds(SettingsModel):
    """Capacity a window or override imposes; each bound is optional, at least one is set."""

    min_units: int | None = Field(default=None, ge=0, description=f"Floor in units {_UNITS_DOC}.")
    max_units: int | None = Field(default=None, ge=0, description=f"Ceiling in units {_UNITS_DOC}.")
    desired_units: int | None = Field(
        default=None, ge=0, description=f"Exact units, ignoring the forecast, {_UNITS_DOC}."
    )

    @model_validator(mode="after")
    def _check_bounds(self) -> Self:
        if self.min_units is None and self.max_units is None and self.desired_units is None:
            raise field_error("", "set at least one of min_units, max_units or desired_units")
        if (
            self.min_units is not None
            and self.max_units is not None
            and self.max_units < self.min_units
        ):
            raise field_error("max_units", f"must be >= min_units ({self.min_units})")
        if self.desired_units is not None:
            if self.min_units is not None and self.desired_units < self.min_units:
                raise field_error("desired_units", f"must be >= min_units ({self.min_units})")
            if self.max_units is not None and self.desired_units > self.max_units:
                raise field_error("desired_units", f"must be <= max_units ({self.max_units})")
        return self


class ScheduleWindow(_Bounds):
    """A recurring window, e.g. business hours, starting at each cron match."""

    name: str = Field(min_length=1, description="Shown in logs and decision reasons.")
    cron: str = Field(
        description="Start times as a 5-field cron expression (minute hour day month weekday)."
    )
    duration: PositiveDuration = Field(description="Seconds each window lasts after its start.")
    timezone: str = Field(
        default="UTC", description="IANA time zone the cron is read in, so windows follow DST."
    )

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        # croniter also takes a 6th (seconds) field; windows are minute-grained, and a 6-field
        # expression written by mistake would shift every start.
        if len(value.split()) != 5:
            raise ValueError(f"invalid cron {value!r}: expected 5 fields")
        if not croniter.is_valid(value):
            raise ValueError(f"invalid cron {value!r}")
        return value

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}: expected e.g. Europe/Berlin") from None
        return value


class Override(_Bounds):
    """A one-off window, e.g. a launch or a sale, between two absolute times."""

    name: str = Field(min_length=1, description="Shown in logs and decision reasons.")
    start: AwareDatetime = Field(description="ISO 8601 start with UTC offset.")
    end: AwareDatetime = Field(description="ISO 8601 end with UTC offset; after start.")

    @model_validator(mode="after")
    def _end_after_start(self) -> Self:
        if self.end <= self.start:
            raise field_error("end", f"must be after start ({self.start.isoformat()})")
        return self
