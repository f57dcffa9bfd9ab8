"""Small, dependency-free SVG charts for the dashboard: self-contained, offline, accessible.

Every chart is an ``<svg role="img">`` with an ``aria-label`` describing it, a visible title,
labelled axes with units, a legend where there is more than one series, and a ``<title>``
on every mark, so hovering shows the exact value (no script needed). Colours are the
Okabe-Ito palette (distinguishable with the common colour-vision deficiencies); lines also
differ by marker and dash, and directions are never shown by colour alone.

Chosen over Plotly or Vega-Lite: those inline 1-4 MB of JavaScript into every report and
add a dependency; these charts are a few kilobytes, render without a script and keep the
CLI's cold start free of matplotlib.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["PALETTE", "bar_chart", "heatmap", "line_chart", "nice_ticks", "stacked_bars", "waterfall"]

#: Okabe-Ito
PALETTE = {
    "blue": "#0072B2",
    "orange": "#E69F00",
    "green": "#009E73",
    "vermillion": "#D55E00",
    "sky": "#56B4E9",
    "purple": "#CC79A7",
    "grey": "#6b7280",
    "yellow": "#F0E442",
}
_W, _H = 640, 280
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 16, 34, 52


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high]."""
    if not math.isfinite(low) or not math.isfinite(high):
        return [0.0]
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    if ticks[-1] < high:
        ticks.append(round(value, 12))
    return ticks


class _Frame:
    """Plot area, scales and axes of one chart."""

    def __init__(self, title: str, y_low: float, y_high: float, y_label: str, fmt: Callable[[float], str]):
        self.ticks = nice_ticks(y_low, y_high)
        self.low, self.high = self.ticks[0], self.ticks[-1]
        self.fmt = fmt
        self.parts = [
            f'<text x="{_W / 2}" y="18" text-anchor="middle" class="ct">{_esc(title)}</text>',
            f'<text transform="translate(14,{(_TOP + _H - _BOTTOM) / 2}) rotate(-90)" text-anchor="middle" class="cl">'
            f"{_esc(y_label)}</text>",
        ]
        for tick in self.ticks:
            y = self.y(tick)
            self.parts.append(f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
            self.parts.append(
                f'<text x="{_LEFT - 6}" y="{y + 3:.1f}" text-anchor="end" class="tk">{_esc(fmt(tick))}</text>'
            )

    def y(self, value: float) -> float:
        span = self.high - self.low or 1.0
        return _TOP + (_H - _TOP - _BOTTOM) * (1 - (value - self.low) / span)

    @staticmethod
    def x(i: int, n: int) -> float:
        width = _W - _LEFT - _RIGHT
        return _LEFT + width * (i + 0.5) / max(n, 1)

    def x_labels(self, labels: Sequence[str], x_label: str) -> None:
        n = len(labels)
        every = max(1, math.ceil(n / 8))
        for i, label in enumerate(labels):
            if i % every == 0 or i == n - 1 and n <= 8:
                self.parts.append(
                    f'<text x="{self.x(i, n):.1f}" y="{_H - _BOTTOM + 16}" text-anchor="middle" class="tk">{_esc(label)}</text>'
                )
        self.parts.append(
            f'<text x="{(_LEFT + _W - _RIGHT) / 2}" y="{_H - 8}" text-anchor="middle" class="cl">{_esc(x_label)}</text>'
        )

    def svg(self, description: str, legend: Sequence[tuple[str, str, bool]] = ()) -> str:
        body = "".join(self.parts)
        dashed = ' stroke-dasharray="4 3"'
        keys = "".join(
            f'<span class="key"><svg width="22" height="10" aria-hidden="true"><line x1="1" x2="21" y1="5" y2="5" '
            f'stroke="{color}" stroke-width="3"{dashed if dash else ""}/></svg>{_esc(name)}</span>'
            for name, color, dash in legend
        )
        return (
            f'<figure class="chart"><svg viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}" role="img" '
            f'aria-label="{_esc(description)}">{body}</svg>'
            + (f'<figcaption class="legend">{keys}</figcaption>' if len(legend) > 1 else "")
            + "</figure>"
        )


def _finite(values: Sequence[float]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def line_chart(
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    *,
    title: str,
    y_label: str,
    x_label: str = "period",
    fmt: Callable[[float], str] = lambda v: f"{v:,.0f}",
    y_range: tuple[float, float] | None = None,
    band: tuple[Sequence[float], Sequence[float], str] | None = None,
) -> str:
    """Lines over periods (one per series), an optional shaded interval (low, high, name)."""
    colors = [PALETTE["blue"], PALETTE["orange"], PALETTE["green"], PALETTE["purple"]]
    markers = ["circle", "square", "diamond", "triangle"]
    every = [v for _, values in series for v in _finite(values)]
    if band is not None:
        every += _finite(band[0]) + _finite(band[1])
    low, high = y_range if y_range is not None else (min(every, default=0.0), max(every, default=1.0))
    frame = _Frame(title, low, high, y_label, fmt)
    n = len(labels)
    if band is not None:
        low_v, high_v, _ = band
        points = [(frame.x(i, n), frame.y(h)) for i, h in enumerate(high_v) if math.isfinite(h)]
        points += [(frame.x(i, n), frame.y(lo)) for i, lo in reversed(list(enumerate(low_v))) if math.isfinite(lo)]
        if points:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            frame.parts.append(f'<polygon points="{path}" fill="{PALETTE["sky"]}" opacity="0.35"/>')
    legend = []
    for k, (name, values) in enumerate(series):
        color, marker, dash = colors[k % len(colors)], markers[k % len(markers)], k % 2 == 1
        coords = [
            (frame.x(i, n), frame.y(v), labels[i], v)
            for i, v in enumerate(values)
            if v is not None and math.isfinite(v)
        ]
        if len(coords) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in coords)
            style = ' stroke-dasharray="5 3"' if dash else ""
            frame.parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"{style}/>')
        for x, y, label, v in coords:
            frame.parts.append(_marker(marker, x, y, color, f"{name}, {label}: {fmt(v)}"))
        legend.append((name, color, dash))
    if band is not None:
        legend.append((band[2], PALETTE["sky"], False))
    frame.x_labels(labels, x_label)
    names = ", ".join(name for name, _ in series)
    return frame.svg(
        f"{title}: {names} over {n} periods ({labels[0] if n else ''} to {labels[-1] if n else ''})", legend
    )


def _marker(kind: str, x: float, y: float, color: str, tip: str) -> str:
    tip = f"<title>{_esc(tip)}</title>"
    if kind == "square":
        return f'<rect x="{x - 3:.1f}" y="{y - 3:.1f}" width="6" height="6" fill="{color}">{tip}</rect>'
    if kind == "diamond":
        return f'<polygon points="{x:.1f},{y - 4:.1f} {x + 4:.1f},{y:.1f} {x:.1f},{y + 4:.1f} {x - 4:.1f},{y:.1f}" fill="{color}">{tip}</polygon>'
    if kind == "triangle":
        return f'<polygon points="{x:.1f},{y - 4:.1f} {x + 4:.1f},{y + 3:.1f} {x - 4:.1f},{y + 3:.1f}" fill="{color}">{tip}</polygon>'
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.2" fill="{color}">{tip}</circle>'


def bar_chart(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    title: str,
    y_label: str,
    x_label: str,
    fmt: Callable[[float], str] = lambda v: f"{v:,.0f}",
) -> str:
    frame = _Frame(title, min(0.0, *_finite(values)), max(_finite(values), default=1.0), y_label, fmt)
    n = len(labels)
    width = (_W - _LEFT - _RIGHT) / max(n, 1) * 0.7
    for i, v in enumerate(values):
        x, top, base = frame.x(i, n), frame.y(max(v, 0)), frame.y(min(v, 0))
        frame.parts.append(
            f'<rect x="{x - width / 2:.1f}" y="{top:.1f}" width="{width:.1f}" height="{max(base - top, 0.5):.1f}" '
            f'fill="{PALETTE["blue"]}"><title>{_esc(labels[i])}: {_esc(fmt(v))}</title></rect>'
        )
    frame.x_labels(labels, x_label)
    return frame.svg(f"{title}: " + ", ".join(f"{label} {fmt(v)}" for label, v in zip(labels, values)))


def stacked_bars(
    labels: Sequence[str],
    stacks: Sequence[tuple[str, Sequence[float], str]],
    *,
    title: str,
    y_label: str,
    fmt: Callable[[float], str],
    x_label: str = "period",
) -> str:
    frame = _Frame(title, 0.0, 1.0, y_label, fmt)
    n = len(labels)
    width = (_W - _LEFT - _RIGHT) / max(n, 1) * 0.8
    bottom = np.zeros(n)
    for name, values, color in stacks:
        values = np.nan_to_num(np.asarray(values, dtype=float))
        for i in range(n):
            y0, y1 = frame.y(bottom[i]), frame.y(bottom[i] + values[i])
            frame.parts.append(
                f'<rect x="{frame.x(i, n) - width / 2:.1f}" y="{y1:.1f}" width="{width:.1f}" height="{max(y0 - y1, 0):.1f}" '
                f'fill="{color}"><title>{_esc(labels[i])}, {_esc(name)}: {_esc(fmt(values[i]))}</title></rect>'
            )
        bottom += values
    frame.x_labels(labels, x_label)
    return frame.svg(f"{title} over {n} periods", [(name, color, False) for name, _, color in stacks])


def waterfall(
    bars: Sequence[tuple[str, float, float, float]],
    limits: tuple[float, float] | None,
    *,
    title: str,
    y_label: str,
    fmt: Callable[[float], str],
) -> str:
    """Bars (name, bottom, height, signed amount); the first and last are totals. Every bar carries
    its signed value as a label (and ▲/▼), so no movement depends on colour alone."""
    tops = [b + h for _, b, h, _ in bars] + [b for _, b, _, _ in bars]
    low, high = limits if limits is not None else (0.0, max(tops, default=1.0))
    frame = _Frame(title, low, high, y_label, fmt)
    n = len(bars)
    width = (_W - _LEFT - _RIGHT) / max(n, 1) * 0.7
    clip_low = frame.y(frame.low)
    for i, (name, bottom, height, amount) in enumerate(bars):
        total = i in (0, n - 1)
        color = PALETTE["grey"] if total else (PALETTE["blue"] if amount >= 0 else PALETTE["vermillion"])
        y_top = frame.y(bottom + height)
        y_bottom = min(frame.y(bottom), clip_low)
        x = frame.x(i, n)
        text = fmt(amount) if total else f"{'▲' if amount > 0 else '▼' if amount < 0 else '='} {fmt(abs(amount))}"
        frame.parts.append(
            f'<rect x="{x - width / 2:.1f}" y="{y_top:.1f}" width="{width:.1f}" height="{max(y_bottom - y_top, 1):.1f}" '
            f'fill="{color}"><title>{_esc(name)}: {_esc(text)}</title></rect>'
        )
        frame.parts.append(f'<text x="{x:.1f}" y="{y_top - 4:.1f}" text-anchor="middle" class="vl">{_esc(text)}</text>')
    frame.x_labels([b[0] for b in bars], "")
    return frame.svg(title + ": " + ", ".join(f"{b[0]} {fmt(b[3])}" for b in bars))


def heatmap(
    rows: Sequence[str],
    columns: Sequence[str],
    values: np.ndarray,
    *,
    title: str,
    row_label: str,
    column_label: str,
    fmt: Callable[[float], str],
) -> str:
    """A cohort heatmap: one row per cohort, one column per offset; darker = higher (0..1 scale)."""
    n_r, n_c = len(rows), len(columns)
    cell_w = (_W - 90 - _RIGHT) / max(n_c, 1)
    cell_h = min(18.0, 420 / max(n_r, 1))
    height = _TOP + cell_h * n_r + 40
    parts = [f'<text x="{_W / 2}" y="18" text-anchor="middle" class="ct">{_esc(title)}</text>']
    for r in range(n_r):
        y = _TOP + r * cell_h
        parts.append(f'<text x="84" y="{y + cell_h * 0.7:.1f}" text-anchor="end" class="tk">{_esc(rows[r])}</text>')
        for c in range(n_c):
            v = values[r, c]
            if not math.isfinite(v):
                continue
            shade = max(0.0, min(1.0, v))
            light = int(245 - 170 * shade)
            fill = f"rgb({light},{int(250 - 120 * shade)},{255 - int(60 * shade)})"
            parts.append(
                f'<rect x="{90 + c * cell_w:.1f}" y="{y:.1f}" width="{cell_w - 1:.1f}" height="{cell_h - 1:.1f}" fill="{fill}">'
                f"<title>{_esc(row_label)} {_esc(rows[r])}, {_esc(column_label)} {_esc(columns[c])}: {_esc(fmt(v))}</title></rect>"
            )
            if cell_w >= 34 and cell_h >= 14:
                ink = "#fff" if shade > 0.6 else "#111827"
                parts.append(
                    f'<text x="{90 + (c + 0.5) * cell_w:.1f}" y="{y + cell_h * 0.7:.1f}" text-anchor="middle" class="hv" fill="{ink}">{_esc(fmt(v))}</text>'
                )
    for c in range(n_c):
        parts.append(
            f'<text x="{90 + (c + 0.5) * cell_w:.1f}" y="{_TOP + n_r * cell_h + 14:.1f}" text-anchor="middle" class="tk">{_esc(columns[c])}</text>'
        )
    parts.append(
        f'<text x="{(90 + _W) / 2}" y="{height - 6:.1f}" text-anchor="middle" class="cl">{_esc(column_label)}</text>'
    )
    return (
        f'<figure class="chart"><svg viewBox="0 0 {_W} {height:.0f}" width="{_W}" height="{height:.0f}" role="img" '
        f'aria-label="{_esc(title)}: {n_r} {row_label}s by {n_c} {column_label}s">{"".join(parts)}</svg></figure>'
    )
