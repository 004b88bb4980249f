"""The status page: one HTML page on the telemetry port for people without Grafana.

``/`` and ``/status`` show one row per target (demand, forecast, ready and desired units,
bounds, mode, the policy acting, the last reason) and a chart of its recent demand, forecast
and ready capacity, drawn on the server as inline SVG: no script, no stylesheet or font from
elsewhere, nothing that leaves the host (the Content-Security-Policy forbids it outright).

What the page shows comes from what the reconciler already publishes through ``Telemetry``
(``record_tick``, ``record_policy_scores``) and from the configuration the supervisor applied;
``StatusBoard`` keeps a small ring of recent points per target for the chart.

Everything printed passes ``html.escape``; anything that can carry a credential (a source's
URL, an error) passes ``daemon.redact`` first. Links are relative, or under the proxy's
``X-Forwarded-Prefix``, so the page works behind a path prefix.
"""

from __future__ import annotations

import html
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import numpy as np
from aiohttp import web

from daemon.redact import redact_text, redact_url

if TYPE_CHECKING:
    from daemon.settings import Settings

__all__ = ["StatusBoard", "TargetInfo", "TargetRing", "render_chart", "render_page", "status_view"]

# The chart covers up to six hours in at most 360 points (one a minute once full): about 7 KB
# a target, 7 MB at 1,000 targets, where tuples of floats would be ten times that.
WINDOW_S = 6 * 3600.0
POINTS = 360
# Columns of a ring's values.
DEMAND, FORECAST, READY, DESIRED = range(4)
# A prefix a proxy may set: non-empty path segments only. Nothing that could leave the
# attribute, and no leading "//", which a browser reads as another host.
_PREFIX = re.compile(r"^(/[A-Za-z0-9._~-]+)+/?$")


class TargetRing:
    """Recent (time, demand, forecast, ready, desired) points of one target, bounded.

    Starts by keeping every tick, so a daemon started a minute ago already draws a line;
    when full, it drops every other point and doubles the spacing it keeps, until
    ``POINTS`` points span ``WINDOW_S``; from then on the oldest point goes for each new one.
    Within the spacing, the newest tick replaces the last point, so it is always drawn.
    """

    def __init__(self, points: int = POINTS, window_s: float = WINDOW_S) -> None:
        if points < 4 or window_s <= 0:
            raise ValueError("points must be >= 4 and window_s > 0")
        self.capacity = points
        self.window_s = window_s
        self._times = np.zeros(points, dtype=np.float64)
        self._values = np.zeros((points, 4), dtype=np.float32)
        self._count = 0
        self._spacing = 0.0

    def __len__(self) -> int:
        return self._count

    def add(self, at: float, values: tuple[float, float, float, float]) -> None:
        n = self._count
        if n and at < self._times[n - 1]:
            return  # a clock step backwards: keep the chart monotonic
        if n >= 2 and at - self._times[n - 2] < self._spacing:
            # The newest point stands in for its stretch until it is a spacing away from the
            # one before: then the next tick starts a new point.
            n -= 1
        elif n == self.capacity:
            n = self._make_room(at)
        self._times[n] = at
        self._values[n] = values
        self._count = n + 1

    def _make_room(self, at: float) -> int:
        full_spacing = self.window_s / self.capacity
        if self._spacing < full_spacing:
            # Thin: keep every other point, newest included, and space new ones wider.
            keep = np.arange(self.capacity - 1, -1, -2)[::-1]
            kept = len(keep)
            self._times[:kept] = self._times[keep]
            self._values[:kept] = self._values[keep]
            span = float(self._times[kept - 1] - self._times[0])
            self._spacing = min(full_spacing, max(2 * self._spacing, span / max(kept - 1, 1)))
            return kept
        self._times[:-1] = self._times[1:]
        self._values[:-1] = self._values[1:]
        return self.capacity - 1

    def points(self, now: float | None = None) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """(times, values) within the window before ``now`` (default: the newest point)."""
        n = self._count
        times, values = self._times[:n], self._values[:n]
        if n:
            end = times[-1] if now is None else now
            keep = times >= end - self.window_s
            times, values = times[keep], values[keep]
        return times.copy(), values.astype(np.float64)


@dataclass(frozen=True, slots=True)
class TargetInfo:
    """What the configuration says of a target, as the page shows it."""

    kind: str
    mode: str
    min_units: int
    max_units: int
    unit_capacity: float
    source: str


@dataclass(frozen=True, slots=True)
class Latest:
    """The target's last tick, as ``Telemetry.record_tick`` received it."""

    at: float
    demand: float
    forecast: float
    ready: float
    current: float
    desired: float
    reason: str
    bounds: tuple[int, int] | None = None
    """The ``(min, max)`` units that held at this tick (a schedule window moves them)."""


class StatusBoard:
    """Per target: the configuration in force, the last tick, the acting policy, the ring."""

    def __init__(
        self,
        *,
        points: int = POINTS,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``clock``: epoch seconds, the same clock the ticks are stamped with."""
        self.clock = clock
        self._points = points
        self._window_s = window_s
        self.rings: dict[str, TargetRing] = {}
        self.latest: dict[str, Latest] = {}
        self.policies: dict[str, str] = {}
        self.targets: dict[str, TargetInfo] = {}
        self.sources: dict[str, tuple[str, str]] = {}
        """name -> (type, where: a redacted URL, a region or a trace)."""

    def configure(self, settings: Settings) -> None:
        """The configuration just applied (at start and after each reload)."""
        self.targets = {
            target.name: TargetInfo(
                kind=str(target.kind),
                mode=str(target.mode),
                min_units=int(target.min_units),
                max_units=int(target.max_units),
                unit_capacity=float(target.unit_capacity),
                source=str(target.source),
            )
            for target in settings.targets
        }
        self.sources = {
            name: (str(getattr(source, "type", "?")), _where(source))
            for name, source in settings.sources.items()
        }
        for gone in set(self.rings) - set(self.targets):
            self.forget(gone)

    def record(
        self,
        target: str,
        at: float,
        *,
        demand: float | None,
        forecast: float | None,
        desired: int,
        current: int,
        ready: int | None,
        reason: str,
        bounds: tuple[int, int] | None = None,
    ) -> None:
        nan = math.nan
        latest = Latest(
            at,
            nan if demand is None else float(demand),
            nan if forecast is None else float(forecast),
            nan if ready is None else float(ready),
            float(current),
            float(desired),
            reason,
            bounds,
        )
        self.latest[target] = latest
        ring = self.rings.get(target)
        if ring is None:
            ring = self.rings[target] = TargetRing(self._points, self._window_s)
        ring.add(at, (latest.demand, latest.forecast, latest.ready, latest.desired))

    def set_policy(self, target: str, rows: Iterable[Any]) -> None:
        """The tournament's scoreboard rows; the active one is the policy in use."""
        active = next((str(row.name) for row in rows if row.active), None)
        if active is not None:
            self.policies[target] = active

    def forget(self, target: str) -> None:
        for table in (self.rings, self.latest, self.policies):
            table.pop(target, None)


def _where(source: Any) -> str:
    for attribute in ("url", "endpoint_url"):
        value = getattr(source, attribute, None)
        if isinstance(value, str) and value:
            return redact_url(value)
    region = getattr(source, "region", None)
    if isinstance(region, str) and region:
        return f"region {region}"
    trace = getattr(source, "trace", None)
    if trace:
        return f"trace {trace}"
    return "generated" if getattr(source, "generate", None) is not None else ""


# -- rendering -----------------------------------------------------------------------------------


def _e(value: object) -> str:
    """Escaped for HTML text and attribute values; also masks secrets in free text."""
    return html.escape(redact_text(str(value)), quote=True)


def _num(value: float) -> str:
    if not math.isfinite(value):
        return "&ndash;"
    return _e(f"{value:.0f}" if value == int(value) and abs(value) < 1e9 else f"{value:.4g}")


def _clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(at))


CHART_W, CHART_H = 640, 180
# Points drawn per series: about one every 3.5 pixels.
CHART_POINTS = 180
# Charts on one page; the rest open one at a time (?target=NAME).
MAX_CHARTS = 50
_PAD_L, _PAD_R, _PAD_T, _PAD_B = 48, 8, 8, 22


def render_chart(
    name: str, times: np.ndarray[Any, Any], values: np.ndarray[Any, Any], unit_capacity: float
) -> str:
    """Inline SVG: ready capacity (ready units x unit capacity) as a shaded step area behind
    demand (solid) and forecast (dashed), in the demand's unit; gaps where a value is missing."""
    if len(times) == 0:
        return '<p class="empty">No ticks yet.</p>'
    if len(times) > CHART_POINTS:
        # A pixel-wide chart gains nothing from more points; keep the newest one exactly.
        pick = np.linspace(0, len(times) - 1, CHART_POINTS).round().astype(int)
        times, values = times[pick], values[pick]
    capacity = values[:, READY] * unit_capacity
    capacity[values[:, READY] < 0] = np.nan
    series = {
        "demand": values[:, DEMAND],
        "forecast": values[:, FORECAST],
        "capacity": capacity,
    }
    finite = np.concatenate([s[np.isfinite(s)] for s in series.values()])
    top = float(finite.max()) * 1.1 if finite.size and finite.max() > 0 else 1.0
    t0, t1 = float(times[0]), float(times[-1])
    span = t1 - t0 if t1 > t0 else 1.0
    inner_w = CHART_W - _PAD_L - _PAD_R
    inner_h = CHART_H - _PAD_T - _PAD_B

    def x(t: float) -> float:
        return _PAD_L + (t - t0) / span * inner_w if t1 > t0 else _PAD_L + inner_w

    def y(v: float) -> float:
        return _PAD_T + inner_h * (1.0 - v / top)

    parts = [
        f'<svg class="chart" role="img" width="{CHART_W}" height="{CHART_H}" '
        f'viewBox="0 0 {CHART_W} {CHART_H}" xmlns="http://www.w3.org/2000/svg" '
        f'data-target="{_e(name)}">',
        f"<title>{_e(name)}: demand, forecast and ready capacity, "
        f"{_e(_clock(t0))} to {_e(_clock(t1))} UTC</title>",
        f'<line class="axis" x1="{_PAD_L}" y1="{_PAD_T + inner_h}" x2="{CHART_W - _PAD_R}" '
        f'y2="{_PAD_T + inner_h}"/>',
        f'<text x="{_PAD_L - 4}" y="{_PAD_T + 10}" text-anchor="end">{_num(top)}</text>',
        f'<text x="{_PAD_L - 4}" y="{_PAD_T + inner_h}" text-anchor="end">0</text>',
        f'<text x="{_PAD_L}" y="{CHART_H - 6}">{_e(_clock(t0))}</text>',
        f'<text x="{CHART_W - _PAD_R}" y="{CHART_H - 6}" text-anchor="end">'
        f"{_e(_clock(t1))} UTC</text>",
    ]
    # Capacity first, as a step area, so demand and forecast draw over it.
    for run in _runs(times, capacity):
        coords = [f"{x(float(run[0][0])):.1f},{y(0):.1f}"]
        for (t, v), nxt in zip(run, [*run[1:], None], strict=True):
            coords.append(f"{x(t):.1f},{y(v):.1f}")
            end = nxt[0] if nxt is not None else t
            coords.append(f"{x(end):.1f},{y(v):.1f}")
        coords.append(f"{x(float(run[-1][0])):.1f},{y(0):.1f}")
        parts.append(f'<polygon class="capacity" points="{" ".join(coords)}"/>')
    for label in ("demand", "forecast"):
        for run in _runs(times, series[label]):
            line = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in run)
            parts.append(f'<polyline class="{label}" points="{line}"/>')
    parts.append("</svg>")
    return "".join(parts)


def _runs(
    times: np.ndarray[Any, Any], values: np.ndarray[Any, Any]
) -> list[list[tuple[float, float]]]:
    """Stretches of finite values: a missing value breaks the line instead of bridging it."""
    runs: list[list[tuple[float, float]]] = []
    current: list[tuple[float, float]] = []
    for t, v in zip(times.tolist(), values.tolist(), strict=True):
        if math.isfinite(v):
            current.append((t, v))
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return runs


_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1b1f24;background:#fff}
h1{font-size:1.4em;margin:0 0 .3em}h2{font-size:1.1em;margin:1.4em 0 .3em}
table{border-collapse:collapse;margin:.5em 0}
th,td{padding:.25em .6em;border-bottom:1px solid #d8dee4;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#1a7f37}.bad{color:#cf222e}.muted{color:#656d76}
svg.chart{background:#f6f8fa;border:1px solid #d8dee4;display:block}
svg.chart text{font-size:11px;fill:#656d76}svg.chart .axis{stroke:#8c959f}
.capacity{fill:#9ecbff;fill-opacity:.55;stroke:none}
.demand{fill:none;stroke:#cf222e;stroke-width:1.5}
.forecast{fill:none;stroke:#8250df;stroke-width:1.5;stroke-dasharray:5 3}
.key span{display:inline-block;margin-right:1em}
.key i{display:inline-block;width:1.4em;height:.6em;margin-right:.3em;vertical-align:middle}
"""


def render_page(
    board: StatusBoard,
    health: Mapping[str, Any],
    *,
    prefix: str = "",
    version: str = "",
    now: float | None = None,
    chart: str | None = None,
    max_charts: int = MAX_CHARTS,
) -> str:
    """The whole page. ``health``: ``HealthState.report()``; ``prefix``: where the telemetry
    port is mounted behind a proxy (links then start with it), "" for relative links;
    ``chart``: draw only this target's chart (``?target=NAME``), else the first
    ``max_charts``: every target has its row, but a thousand charts are megabytes of page."""
    moment = board.clock() if now is None else now
    targets = list(board.targets.items())
    charted = [t for t in targets if t[0] == chart] if chart else targets[:max_charts]
    charted_names = {name for name, _ in charted}
    link = f"{prefix.rstrip('/')}/" if prefix else ""
    ready = bool(health.get("ready"))
    reasons = [str(r) for r in health.get("reasons", [])]
    states = health.get("targets", {})
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        # No script anywhere: a refresh every 30 s keeps the page current.
        '<meta http-equiv="refresh" content="30">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>elasticd status</title><style>{_STYLE}</style></head><body>",
        f"<h1>elasticd status</h1><p>{_e(version)} &middot; "
        f'<span class="{"ok" if ready else "bad"}">{"ready" if ready else "not ready"}</span>'
        f" &middot; {_e(_clock(moment))} UTC &middot; "
        f'<a href="{_e(link)}metrics">metrics</a> &middot; '
        f'<a href="{_e(link)}readyz">readyz</a> &middot; '
        f'<a href="{_e(link)}healthz">healthz</a></p>',
    ]
    if reasons:
        out.append("<ul>" + "".join(f'<li class="bad">{_e(r)}</li>' for r in reasons) + "</ul>")
    out.append(
        "<table><thead><tr><th>target</th><th>mode</th><th>demand</th><th>forecast</th>"
        "<th>ready</th><th>desired</th><th>min/max</th><th>policy</th><th>reason</th>"
        "<th>last tick</th><th>health</th></tr></thead><tbody>"
    )
    for name, info in targets:
        latest = board.latest.get(name)
        policy = board.policies.get(name, "")
        # Query-only relative links keep the page's own path, so they work behind a prefix.
        href = f"#t-{name}" if name in charted_names else f"?target={quote(name)}#t-{name}"
        cells = [f'<td><a href="{_e(href)}">{_e(name)}</a></td>', f"<td>{_e(info.mode)}</td>"]
        if latest is None:
            cells.append('<td colspan="4" class="muted">waiting for the first tick</td>')
        else:
            cells += [
                f'<td class="n">{_num(latest.demand)}</td>',
                f'<td class="n">{_num(latest.forecast)}</td>',
                f'<td class="n">{_num(latest.ready)}</td>',
                f'<td class="n">{_num(latest.desired)}</td>',
            ]
        cells.append(f'<td class="n">{_bounds_cell(info, latest)}</td>')
        cells.append(f"<td>{_e(policy) or '&ndash;'}</td>")
        cells.append(f"<td>{_e(latest.reason) if latest else '&ndash;'}</td>")
        age = f"{max(0.0, moment - latest.at):.0f}s ago" if latest else "&ndash;"
        cells.append(f'<td class="n">{_e(age) if latest else age}</td>')
        cells.append(f"<td>{_health_cell(states.get(name))}</td>")
        out.append(f"<tr>{''.join(cells)}</tr>")
    out.append("</tbody></table>")
    out.append(
        '<p class="key"><span><i style="background:#cf222e"></i>demand</span>'
        '<span><i style="background:#8250df"></i>forecast (peak over the lead time)</span>'
        '<span><i style="background:#9ecbff"></i>ready capacity</span></p>'
    )
    if chart and not charted:
        out.append(f'<p class="bad">No target named {_e(chart)}.</p>')
    elif len(charted) < len(targets):
        out.append(
            f'<p class="muted">Charts for {len(charted)} of {len(targets)} targets; a target\'s '
            "name in the table opens its own.</p>"
        )
    for name, info in charted:
        ring = board.rings.get(name)
        times, values = ring.points() if ring is not None else (np.empty(0), np.empty((0, 4)))
        out.append(
            f'<h2 id="t-{_e(name)}">{_e(name)} <span class="muted">({_e(info.kind)}, '
            f"source {_e(info.source)}, one unit serves {_num(info.unit_capacity)})</span></h2>"
        )
        out.append(render_chart(name, times, values, info.unit_capacity))
    if board.sources:
        out.append("<h2>Sources</h2><table><tbody>")
        for name, (kind, where) in board.sources.items():
            out.append(f"<tr><td>{_e(name)}</td><td>{_e(kind)}</td><td>{_e(where)}</td></tr>")
        out.append("</tbody></table>")
    out.append("</body></html>")
    return "\n".join(out)


def _bounds_cell(info: TargetInfo, latest: Latest | None) -> str:
    """The bounds that held at the last tick; where a schedule window moved them from the
    configured ones, those follow in grey (the table must not claim a minimum not in force)."""
    configured = f"{info.min_units}/{info.max_units}"
    if latest is None or latest.bounds is None:
        return configured
    low, high = latest.bounds
    held = f"{low}/{high}"
    if held == configured:
        return held
    return f'{held} <span class="muted" title="configured">({configured})</span>'


def _health_cell(state: Mapping[str, Any] | None) -> str:
    if not state:
        return '<span class="muted">&ndash;</span>'
    problems = [
        f"{part}: {state[part]['error']}"
        for part in ("source", "model", "actuator")
        if isinstance(state.get(part), Mapping) and state[part].get("error")
    ]
    if problems:
        return "<br>".join(f'<span class="bad">{_e(p)}</span>' for p in problems)
    return '<span class="ok">ok</span>'


def _prefix(request: web.Request) -> str:
    value = request.headers.get("X-Forwarded-Prefix", "").strip()
    if _PREFIX.fullmatch(value) is None or ".." in value.split("/"):
        return ""
    return value


# Nothing but this page's own inline style and SVG: no script, no remote anything.
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def status_view(
    board: StatusBoard, health_report: Callable[[], Mapping[str, Any]], version: str
) -> Callable[[web.Request], Any]:
    """The aiohttp handler for ``/`` and ``/status``."""

    async def status(request: web.Request) -> web.Response:
        body = render_page(
            board,
            health_report(),
            prefix=_prefix(request),
            version=version,
            chart=request.query.get("target") or None,
        )
        return web.Response(text=body, content_type="text/html", headers=_HEADERS)

    return status
