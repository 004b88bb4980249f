"""Each target's decision state survives a restart and a reload (issue 9, defect 4)."""

from __future__ import annotations

import math
import os
import stat
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.core.landed import LandedCapacity
from daemon.core.tick import TickState
from daemon.core.types import PlannerState
from daemon.runtime.decision_state import DecisionStateStore, StateKey, decode, encode
from models.calibration import CalibrationState

KEY = StateKey(unit_capacity=100.0, lead_s=300.0, shortfall_target=0.01)

times = st.floats(1e9, 2e9, allow_nan=False)
counts = st.integers(0, 10_000)
states = st.builds(
    TickState,
    planner=st.builds(
        PlannerState,
        recommendations=st.lists(st.tuples(times, counts), max_size=5).map(tuple),
        scale_events=st.lists(st.tuples(times, st.integers(-500, 500)), max_size=5).map(tuple),
    ),
    calibration=st.builds(
        CalibrationState,
        conformal=st.floats(-2, 2),
        integral=st.floats(-0.5, 1.5),
        observed_steps=counts,
        short_steps=counts,
    ),
    forecast_source=st.sampled_from(["", "model", "recent_peak", "seasonal_naive"]),
    landed=st.builds(
        LandedCapacity,
        ready=counts,
        pending=st.lists(st.tuples(times, st.integers(1, 100)), max_size=4).map(tuple),
        started=st.booleans(),
    ),
    last_sample_time=st.one_of(st.just(-math.inf), times),
)


@settings(max_examples=200, deadline=None)
@given(states)
def test_encode_decode_round_trip(state: TickState) -> None:
    assert decode(encode(state)) == state


def sample_state() -> TickState:
    return TickState(
        planner=PlannerState(recommendations=((1_000.0, 20), (1_020.0, 11))),
        calibration=CalibrationState(conformal=0.2, integral=0.1, observed_steps=7, short_steps=1),
        forecast_source="model",
        landed=LandedCapacity(ready=20, pending=((1_300.0, 2),), started=True),
        last_sample_time=1_020.0,
    )


def test_a_saved_state_is_restored_whole(tmp_path: Path) -> None:
    store = DecisionStateStore(tmp_path / "state" / "targets")
    store.save("web", KEY, sample_state(), now=1_021.0, last_written=20)

    saved = store.load("web", KEY)

    assert saved is not None
    assert saved.state == sample_state()
    assert saved.last_written == 20 and not saved.settings_changed
    # Owner-only: the state says what runs where.
    for directory in (tmp_path / "state", tmp_path / "state" / "targets"):
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    # Nothing but the file itself is left behind (the temporary was renamed over it).
    assert sorted(p.name for p in (tmp_path / "state" / "targets").iterdir()) == ["web.json"]


def test_a_changed_target_keeps_its_window_but_not_its_calibration(tmp_path: Path) -> None:
    store = DecisionStateStore(tmp_path)
    store.save("web", KEY, sample_state(), now=1_021.0, last_written=20)
    edited = StateKey(unit_capacity=50.0, lead_s=300.0, shortfall_target=0.01)

    saved = store.load("web", edited)

    assert saved is not None and saved.settings_changed
    assert saved.state.planner == sample_state().planner
    assert saved.state.calibration == CalibrationState()
    assert saved.state.landed == LandedCapacity()
    # Unless the user asks for a fresh start.
    assert store.load("web", edited, keep_on_change=False) is None
    assert store.load("web", KEY, keep_on_change=False) is not None


def test_corrupt_or_foreign_files_start_fresh_and_never_raise(tmp_path: Path) -> None:
    store = DecisionStateStore(tmp_path)
    store.save("web", KEY, sample_state(), now=1_021.0, last_written=None)
    good = store.path("web").read_text()
    for text in (
        "",
        "{",
        "[]",
        "null",
        '{"version": 1}',
        good.replace('"web"', '"api"'),
        good.replace("20]", "-3]"),
        "\x00\xff\xfe",
    ):
        store.path("web").write_bytes(
            text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
        )
        assert store.load("web", KEY) is None, text
    assert store.load("absent", KEY) is None
