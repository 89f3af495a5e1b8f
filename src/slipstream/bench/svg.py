"""Tiny inline-SVG charts (lines and segments), so the HTML report needs no plotting library
and stays one self-contained file."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
W, H = 560, 300
LEFT, RIGHT, TOP, BOTTOM = 60, 16, 28, 44


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not math.isfinite(lo) or not math.isfinite(hi) or hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.3g}"


@dataclass
class Frame:
    """Data → pixel mapping of one chart."""

    x0: float
    x1: float
    y0: float
    y1: float

    def px(self, x: float) -> float:
        return LEFT + (x - self.x0) / ((self.x1 - self.x0) or 1) * (W - LEFT - RIGHT)

    def py(self, y: float) -> float:
        return H - BOTTOM - (y - self.y0) / ((self.y1 - self.y0) or 1) * (H - TOP - BOTTOM)


def _axes(f: Frame, title: str, xlabel: str, ylabel: str) -> list[str]:
    out = [
        f'<text x="{W / 2}" y="16" text-anchor="middle" font-weight="bold">{escape(title)}</text>',
        f'<text x="{W / 2}" y="{H - 6}" text-anchor="middle">{escape(xlabel)}</text>',
        f'<text x="14" y="{H / 2}" text-anchor="middle" transform="rotate(-90 14 {H / 2})">'
        f"{escape(ylabel)}</text>",
    ]
    for x in nice_ticks(f.x0, f.x1):
        if f.x0 <= x <= f.x1:
            px = f.px(x)
            out.append(
                f'<line x1="{px:.1f}" y1="{TOP}" x2="{px:.1f}" y2="{H - BOTTOM}" stroke="#eee"/>'
                f'<text x="{px:.1f}" y="{H - BOTTOM + 14}" text-anchor="middle">{_fmt(x)}</text>'
            )
    for y in nice_ticks(f.y0, f.y1):
        if f.y0 <= y <= f.y1:
            py = f.py(y)
            out.append(
                f'<line x1="{LEFT}" y1="{py:.1f}" x2="{W - RIGHT}" y2="{py:.1f}" stroke="#eee"/>'
                f'<text x="{LEFT - 4}" y="{py + 4:.1f}" text-anchor="end">{_fmt(y)}</text>'
            )
    out.append(
        f'<rect x="{LEFT}" y="{TOP}" width="{W - LEFT - RIGHT}" height="{H - TOP - BOTTOM}" '
        'fill="none" stroke="#888"/>'
    )
    return out


def _legend(labels: Sequence[str]) -> list[str]:
    out = []
    for i, label in enumerate(labels):
        y = TOP + 14 + 14 * i
        c = PALETTE[i % len(PALETTE)]
        out.append(
            f'<line x1="{W - RIGHT - 150}" y1="{y - 4}" x2="{W - RIGHT - 134}" y2="{y - 4}" '
            f'stroke="{c}" stroke-width="2"/><text x="{W - RIGHT - 130}" y="{y}">'
            f"{escape(label)}</text>"
        )
    return out


def _svg(parts: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">'
        + "".join(parts)
        + "</svg>"
    )


def line_chart(
    series: dict[str, list[tuple[float, float]]],
    title: str,
    xlabel: str,
    ylabel: str,
    *,
    markers: bool = False,
    y_from_zero: bool = True,
    sort_x: bool = True,
) -> str:
    """One polyline per series (points sorted by x unless ``sort_x`` is off: a throughput–
    latency curve keeps the order of offered load, since achieved throughput can fall)."""
    pts = [p for s in series.values() for p in s]
    if not pts:
        return _svg(_axes(Frame(0, 1, 0, 1), f"{title} (no data)", xlabel, ylabel))
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    f = Frame(min(xs), max(xs), 0.0 if y_from_zero else min(ys), max(ys) * 1.05 or 1.0)
    parts = _axes(f, title, xlabel, ylabel)
    for i, (_, s) in enumerate(series.items()):
        c = PALETTE[i % len(PALETTE)]
        coords = " ".join(f"{f.px(x):.1f},{f.py(y):.1f}" for x, y in (sorted(s) if sort_x else s))
        parts.append(f'<polyline points="{coords}" fill="none" stroke="{c}" stroke-width="1.6"/>')
        if markers:
            parts += [
                f'<circle cx="{f.px(x):.1f}" cy="{f.py(y):.1f}" r="3" fill="{c}"/>' for x, y in s
            ]
    return _svg(parts + _legend(list(series)))


def cdf_points(values: Sequence[float], max_points: int = 400) -> list[tuple[float, float]]:
    """Empirical CDF as (value, fraction ≤ value), thinned to at most ``max_points``."""
    v = sorted(values)
    n = len(v)
    if not n:
        return []
    step = max(1, n // max_points)
    idx = list(range(0, n, step))
    if idx[-1] != n - 1:
        idx.append(n - 1)
    return [(v[i], (i + 1) / n) for i in idx]


def cdf_chart(series: dict[str, Sequence[float]], title: str, xlabel: str) -> str:
    return line_chart(
        {k: cdf_points(v) for k, v in series.items() if len(v)}, title, xlabel, "fraction ≤ x"
    )


def timeline_chart(rows: list[tuple[float, float | None, float, bool]], title: str) -> str:
    """One horizontal bar per request: scheduled → first token (grey) → end (blue, red if it
    failed). ``rows``: (scheduled, first token or None, end, failed), seconds from run start."""
    if not rows:
        return _svg(_axes(Frame(0, 1, 0, 1), f"{title} (no data)", "s", "request"))
    f = Frame(0.0, max(r[2] for r in rows) or 1.0, 0.0, float(len(rows)))
    parts = _axes(f, title, "time since start (s)", "request (by scheduled time)")
    for i, (sched, first, end, failed) in enumerate(sorted(rows)):
        y = f.py(i + 0.5)
        mid = first if first is not None else end
        parts.append(
            f'<line x1="{f.px(sched):.1f}" y1="{y:.1f}" x2="{f.px(mid):.1f}" y2="{y:.1f}" '
            f'stroke="#bbb"/><line x1="{f.px(mid):.1f}" y1="{y:.1f}" x2="{f.px(end):.1f}" '
            f'y2="{y:.1f}" stroke="{"#d62728" if failed else "#1f77b4"}"/>'
        )
    return _svg(parts)
