"""One candidate policy of the tournament, replayed in shadow, and how it is scored.

A candidate is a forecast stream (the trained model, a challenger model, the reactive rule's
"demand now", a seasonal-naive forecast) put through exactly what the plan does: its own
conformal offset (:mod:`daemon.core.conformal`), its own calibration and planner state
(:func:`daemon.core.tick.tick`, so bounds, schedules, stabilisation, rate limits and the
reactive floor hold for every candidate), and its own shadow capacity: the tick's ledger
(:mod:`daemon.core.landed`), which follows ``shared/SCORING.md`` (increases ready after the
lead, decreases at once, pending newest first, the first decision ready at once); a step is
short when demand exceeds the shadow's ready units, and billed = ready + pending after the
decision.

The scoreboard keeps exponentially decayed sums and a decayed histogram of the log margins
(a trailing window of about ``window_s``, which is naturally shorter while less history
exists; the score is :func:`matched_cost`), and plain totals since the candidate started (for
the canary's paired comparison), so its state is a few hundred bytes.
"""

from __future__ import annotations

import base64
import math
from array import array
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from daemon.core.conformal import ConformalSettings, ConformalTracker
from daemon.core.reactive import units_to_serve
from daemon.core.tick import TickState
from daemon.core.types import PlannerSettings


@dataclass(frozen=True, slots=True)
class Board:
    """A candidate's record: decayed over the window, and plain totals since it started."""

    billed: float = 0.0
    short: float = 0.0
    steps: float = 0.0
    updated: float | None = None  # time of the last scored step
    total_billed: float = 0.0
    total_short: float = 0.0
    total_steps: int = 0
    recent_short: float = 0.0
    """Short steps decayed over the demotion window (a day): a level shift shows here
    within hours, while the week's window would dilute it."""
    recent_steps: float = 0.0

    def add(
        self,
        now: float,
        billed: int,
        short: bool,
        window_s: float,
        in_window: bool = True,
        recent_window_s: float = 86_400.0,
    ) -> Board:
        """One scored step (a step with a demand observation); ``in_window`` False counts it in
        the totals and the recent sums only (a policy's burn-in)."""
        elapsed = 0.0 if self.updated is None else max(0.0, now - self.updated)
        keep_recent = math.exp(-elapsed / recent_window_s)
        recent_short = self.recent_short * keep_recent + short
        recent_steps = self.recent_steps * keep_recent + 1.0
        if not in_window:
            return replace(
                self,
                updated=now,
                total_billed=self.total_billed + billed,
                total_short=self.total_short + short,
                total_steps=self.total_steps + 1,
                recent_short=recent_short,
                recent_steps=recent_steps,
            )
        keep = math.exp(-elapsed / window_s)
        return Board(
            billed=self.billed * keep + billed,
            short=self.short * keep + short,
            steps=self.steps * keep + 1.0,
            updated=now,
            total_billed=self.total_billed + billed,
            total_short=self.total_short + short,
            total_steps=self.total_steps + 1,
            recent_short=recent_short,
            recent_steps=recent_steps,
        )

    @property
    def short_share(self) -> float:
        return self.short / self.steps if self.steps else 0.0

    @property
    def mean_billed(self) -> float:
        return self.billed / self.steps if self.steps else math.nan


def log_margin(demand: float, ready_units: int, unit_capacity: float) -> float:
    """How far a step's ready capacity was above its demand, ``log(ready * C / demand)``:
    negative on a short step; no demand counts as ample room, no capacity as none."""
    if demand <= 0:
        return math.inf
    if ready_units <= 0:
        return -math.inf
    return math.log(ready_units * unit_capacity / demand)


class MarginHistogram:
    """A candidate's log margins (:func:`log_margin`) over the scoreboard's window: a histogram
    whose bins decay exponentially with the window's time constant, so its state is a fixed
    127 numbers whatever the window (a ring of a week's margins at 1-minute steps would be
    forty times that, per candidate and target).

    Its ``target`` quantile is how much the candidate's capacity could have been scaled down
    (or had to be scaled up, when negative) for its short share to be exactly the target: every
    step's margin moves by the same ``log`` of the factor. Unlike a count of short steps, it
    uses how close every near miss came, so it separates two policies long before either has
    been short a handful of times. Decay is applied lazily: each new step is weighted
    ``exp((now - reference) / window)``, and the bins are rescaled when that weight grows large.
    """

    LOW = -1.0
    WIDTH = 0.02
    BINS = 125
    """Bins of 2 % over margins from -1 (capacity 37 % of demand) to 1.5 (4.5 times demand),
    and one below and one above: precise where the quantiles of any shortfall target fall."""
    _RESCALE_AT = 1e30  # the bins are float32 (max 3e38)

    __slots__ = ("_bins", "_reference")

    def __init__(self) -> None:
        self._bins = array("f", bytes(4 * (self.BINS + 2)))
        self._reference: float | None = None

    def add(self, now: float, margin: float, window_s: float) -> None:
        """One scored step's margin at time ``now``."""
        if self._reference is None:
            self._reference = now
        weight = math.exp(max(0.0, now - self._reference) / window_s)
        if weight > self._RESCALE_AT:
            bins = self._bins
            for slot in range(len(bins)):
                bins[slot] /= weight
            self._reference, weight = now, 1.0
        self._bins[self._slot(margin)] += weight

    def _slot(self, margin: float) -> int:
        if not margin >= self.LOW:  # below the range, or -inf
            return 0
        offset = (margin - self.LOW) / self.WIDTH
        return self.BINS + 1 if offset >= self.BINS else 1 + int(offset)

    @property
    def empty(self) -> bool:
        # Every step sets the reference and adds a positive weight: no reference, no step.
        return self._reference is None

    def quantile(self, level: float) -> float | None:
        """The margin below which ``level`` of the (decayed) steps fall, interpolated within
        its bin; the range's ends outside it. None before the first step."""
        total = math.fsum(self._bins)
        if total <= 0:
            return None
        need = level * total
        seen = 0.0
        top = self.LOW + self.BINS * self.WIDTH
        for slot, weight in enumerate(self._bins):
            if weight <= 0:
                continue
            if seen + weight >= need:
                if slot == 0:
                    return self.LOW - self.WIDTH
                if slot == self.BINS + 1:
                    return top
                low = self.LOW + (slot - 1) * self.WIDTH
                return low + self.WIDTH * (need - seen) / weight
            seen += weight
        return top

    def to_json(self) -> dict[str, Any]:
        return {
            "reference": self._reference,
            "bins": base64.b64encode(self._bins.tobytes()).decode("ascii"),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> MarginHistogram:
        """Restore :meth:`to_json`; a snapshot from before margins were kept starts empty."""
        histogram = cls()
        if not data:
            return histogram
        bins = array("f")
        bins.frombytes(base64.b64decode(data["bins"]))
        if len(bins) == len(histogram._bins):
            histogram._bins = bins
            histogram._reference = None if data["reference"] is None else float(data["reference"])
        return histogram


def matched_cost(mean_billed: float, margins: MarginHistogram, target: float) -> float:
    """Cost at matched shortfall: the mean billed units a candidate would have had, had its
    capacity been scaled by the one factor that makes its short share exactly ``target``
    (``mean_billed x exp(-q)``, ``q`` the margins' ``target`` quantile). Lower is better;
    infinite without a scored step."""
    q = margins.quantile(target)
    if q is None or not math.isfinite(mean_billed):
        return math.inf
    return mean_billed * math.exp(-q)


def smoothed_share(short: float, steps: float, target: float) -> float:
    """The short share with a prior of one short step in ``1 / target`` steps (the target
    itself): a window without a short step is not evidence of a zero short share."""
    prior = 1.0 / target
    return (short + 1.0) / (steps + prior)


def exchange_rate(frontier: tuple[list[float], list[float]], share: float, target: float) -> float:
    """How much a plan at short share ``share`` would cost at the target, relative to now, by
    the frontier's shape: ``B(target) / B(share)``, interpolated in log-log between the arms
    (flat beyond them: no credit for a trade-off nobody measured)."""
    shares, costs = frontier
    at_target = _interp(math.log(target), shares, costs)
    at_share = _interp(math.log(share), shares, costs)
    return math.exp(at_target - at_share)


def _interp(x: float, xs: list[float], ys: list[float]) -> float:
    if x <= xs[0]:
        return ys[0]
    if x >= xs[-1]:
        return ys[-1]
    for (x0, y0), (x1, y1) in zip(
        zip(xs, ys, strict=True), zip(xs[1:], ys[1:], strict=True), strict=True
    ):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return ys[-1]


def adjusted_cost(
    billed: float, short: float, steps: float, target: float, elasticity: float
) -> float:
    """Mean billed units per step, moved to what they would be at the shortfall target.

    Cutting a plan's short share from ``s`` to the target costs about ``(s / target) **
    elasticity`` times more (a headroom trade-off with a tail of scale ``elasticity`` in log
    space), so this is the candidate's cost at matched shortfall; lower is better. Equivalent
    near the target to billed units + a price per short step of ``elasticity * cost / target``,
    the price at which meeting the target is the optimum. Infinite without a scored step.
    """
    if steps <= 0:
        return math.inf
    cost = billed / steps
    return float(cost * (smoothed_share(short, steps, target) / target) ** elasticity)


DEFAULT_UTILISATIONS: tuple[float, ...] = (
    *(0.1, 0.2, 0.3, 0.4, 0.5),
    *(round(0.6 + 0.05 * i, 2) for i in range(9)),
)
"""Target utilisations the reactive rule is tuned over: 0.10 .. 1.00, finer where most
targets settle (bursty ones need low settings to meet a small shortfall target at all)."""


HPA_STABILISATION_S = 300.0
"""The HPA's default scale-down stabilisation window: part of the reactive rule itself."""


def hpa_stabilisation_s(planner: PlannerSettings) -> float:
    """The reactive rule holds scale-downs for the HPA's window, or the planner's if longer."""
    return max(HPA_STABILISATION_S, planner.scale_down_stabilisation_s)


class ReactiveTuner:
    """The HPA rule's target utilisation, tuned online so its short share meets the target.

    One light shadow per utilisation ``u`` (an "arm"): the HPA arithmetic with the planner's
    tolerance and scale-down stabilisation, and its own capacity under the replay rules. The
    tuned ``u`` is the highest whose arm's short share over the trailing window (decayed like
    the scoreboard, with the scoreboard's prior) is within the target: the cheapest setting
    that would have met it. A quantile tracker on ``u`` would do this with one number, but a
    short step is a rare event and such a tracker wanders; the arms see every setting's outcome
    on every step. Mutable; :meth:`to_json` / :meth:`from_json` persist it.
    """

    __slots__ = (
        "_billed",
        "_pending",
        "_ready",
        "_recs",
        "_short",
        "_started",
        "_steps",
        "_updated",
        "utilisations",
    )

    def __init__(self, utilisations: tuple[float, ...] = DEFAULT_UTILISATIONS) -> None:
        self.utilisations = utilisations
        n = len(utilisations)
        self._ready = [0] * n
        self._pending: list[list[tuple[float, int]]] = [[] for _ in range(n)]
        self._recs: list[tuple[tuple[float, int], ...]] = [() for _ in range(n)]
        self._short = [0.0] * n
        self._steps = [0.0] * n
        self._billed = [0.0] * n
        self._started = False
        self._updated: float | None = None

    def choose(self, target: float, default: float) -> float:
        """The highest utilisation whose arm met the target over the window, or, where no
        setting would have (a jump no headroom covers), did as well as the most cautious one:
        headroom that buys no fewer short steps is only cost."""
        if not any(self._steps):
            return default
        floor = min(
            smoothed_share(short, steps, target)
            for short, steps in zip(self._short, self._steps, strict=True)
        )
        # A hair of slack: decayed sums of equal counts differ in the last bits.
        allowed = max(target, floor) * (1.0 + 1e-9)
        best = self.utilisations[0]
        for u, short, steps in zip(self.utilisations, self._short, self._steps, strict=True):
            if smoothed_share(short, steps, target) <= allowed:
                best = u
        return best

    def frontier(self, target: float) -> tuple[list[float], list[float]] | None:
        """The target's own cost/shortfall trade-off over the window: ``(log short shares,
        log mean billed units)`` of the arms, by share, the cost made non-increasing in the
        share (a plan can always spend more for nothing). None before any scored step."""
        if not all(self._steps):
            return None
        points = sorted(
            (math.log(smoothed_share(short, steps, target)), math.log(max(billed / steps, 1e-9)))
            for short, steps, billed in zip(self._short, self._steps, self._billed, strict=True)
        )
        shares, costs = [p[0] for p in points], []
        lowest = math.inf
        for _, cost in points:
            lowest = min(lowest, cost)
            costs.append(lowest)
        return shares, costs

    def step(
        self,
        now: float,
        demand: float | None,
        planner: PlannerSettings,
        window_s: float,
    ) -> None:
        """Replay one step on every arm (``demand`` None: no observation, arms hold)."""
        unit = planner.unit_capacity
        keep = 1.0
        if demand is not None:
            if self._updated is not None:
                keep = math.exp(-max(0.0, now - self._updated) / window_s)
            self._updated = now
        tolerance = planner.reactive_tolerance
        cutoff = now - hpa_stabilisation_s(planner)
        lead_s = planner.lead_s
        ready_all, recs_all = self._ready, self._recs
        short_all, steps_all, billed_all = self._short, self._steps, self._billed
        for a, u in enumerate(self.utilisations):
            pending = self._pending[a]
            ready = ready_all[a]
            while pending and pending[0][0] <= now:
                ready += pending.pop(0)[1]
            ready_all[a] = ready
            if demand is None:
                continue
            total = ready
            for _, units in pending:
                total += units
            # hpa_recommendation(demand, total, unit, u, tolerance), inlined (per arm per step).
            per_unit = unit * u
            if total > 0 and abs(demand / (total * per_unit) - 1.0) <= tolerance:
                raw = total
            else:
                raw = units_to_serve(demand, per_unit)
            # The HPA's scale-down stabilisation: the highest recommendation in the window
            # (the same rule as daemon.core.stabilisation, inlined: this runs per arm per step).
            kept = [r for r in recs_all[a] if r[0] >= cutoff]
            desired = raw
            for _, past in kept:
                if past > desired:
                    desired = past
            while kept and kept[-1][1] <= raw and kept[-1][0] <= now:
                kept.pop()
            kept.append((now, raw))
            recs_all[a] = tuple(kept)
            if not self._started:
                ready_all[a] = desired
            elif desired > total:
                pending.append((now + lead_s, desired - total))
            elif desired < total:
                surplus = total - desired
                while surplus and pending:
                    at, units = pending[-1]
                    take = min(surplus, units)
                    surplus -= take
                    if take == units:
                        pending.pop()
                    else:
                        pending[-1] = (at, units - take)
                ready_all[a] -= surplus
            short_all[a] = short_all[a] * keep + (demand > ready * unit)
            steps_all[a] = steps_all[a] * keep + 1.0
            billed_all[a] = billed_all[a] * keep + desired
        if demand is not None:
            self._started = True

    def to_json(self) -> dict[str, Any]:
        return {
            "utilisations": list(self.utilisations),
            "ready": list(self._ready),
            "pending": [[list(p) for p in arm] for arm in self._pending],
            "recs": [[list(r) for r in arm] for arm in self._recs],
            "short": list(self._short),
            "steps": list(self._steps),
            "billed": list(self._billed),
            "started": self._started,
            "updated": self._updated,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReactiveTuner:
        tuner = cls(tuple(float(u) for u in data["utilisations"]))
        tuner._ready = [int(r) for r in data["ready"]]
        tuner._pending = [[(float(t), int(n)) for t, n in arm] for arm in data["pending"]]
        tuner._recs = [tuple((float(t), int(n)) for t, n in arm) for arm in data["recs"]]
        tuner._short = [float(x) for x in data["short"]]
        tuner._steps = [float(x) for x in data["steps"]]
        tuner._billed = [float(x) for x in data["billed"]]
        tuner._started = bool(data["started"])
        tuner._updated = None if data["updated"] is None else float(data["updated"])
        return tuner


TickCodec = tuple[Callable[[TickState], dict[str, Any]], Callable[[dict[str, Any]], TickState]]
"""(encode, decode) of a ``TickState`` as JSON values; the daemon's state store owns them."""


@dataclass(slots=True)
class Candidate:
    """One policy's shadow replay (mutable: the tournament owns one per policy).

    Its shadow capacity is its tick state's own ledger (:mod:`daemon.core.landed`), which
    follows the replay rules: every decision of a shadow lands.
    """

    name: str
    tracker: ConformalTracker | None = None  # None: a policy without a conformal offset
    tuner: ReactiveTuner | None = None  # the reactive policy's utilisation arms
    tick_state: TickState = field(default_factory=TickState)
    recommendations: tuple[tuple[float, int], ...] = ()
    """The reactive rule's own stabilisation window (its shadow's)."""
    board: Board = field(default_factory=Board)
    started: float | None = None
    label: str = ""  # which model (for model candidates), for explanations
    margins: MarginHistogram = field(default_factory=MarginHistogram)
    """Its scored steps' margins over the window: what its score is made of."""

    def to_json(self, codec: TickCodec) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "started": self.started,
            "tracker": None if self.tracker is None else self.tracker.to_json(),
            "tuner": None if self.tuner is None else self.tuner.to_json(),
            "tick_state": codec[0](self.tick_state),
            "board": asdict(self.board),
            "margins": self.margins.to_json(),
            "recommendations": [list(r) for r in self.recommendations],
        }

    @classmethod
    def from_json(
        cls, settings: ConformalSettings, codec: TickCodec, data: dict[str, Any]
    ) -> Candidate:
        board = data["board"]
        return cls(
            name=str(data["name"]),
            label=str(data["label"]),
            started=None if data["started"] is None else float(data["started"]),
            tracker=(
                None
                if data["tracker"] is None
                else ConformalTracker.from_json(settings, data["tracker"])
            ),
            tuner=None if data["tuner"] is None else ReactiveTuner.from_json(data["tuner"]),
            tick_state=codec[1](data["tick_state"]),
            recommendations=tuple((float(t), int(n)) for t, n in data["recommendations"]),
            margins=MarginHistogram.from_json(data.get("margins")),
            board=Board(
                billed=float(board["billed"]),
                short=float(board["short"]),
                steps=float(board["steps"]),
                updated=None if board["updated"] is None else float(board["updated"]),
                total_billed=float(board["total_billed"]),
                total_short=float(board["total_short"]),
                total_steps=int(board["total_steps"]),
                recent_short=float(board["recent_short"]),
                recent_steps=float(board["recent_steps"]),
            ),
        )
