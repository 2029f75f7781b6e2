"""How ``wmkit eval physics`` shows its results: tables on screen and surprise curves as SVG."""

from __future__ import annotations

import math

import numpy as np


def format_table(results: list[dict], kind: str = "fixed", metric: str = "pairwise") -> str:
    props = [p for p in results[0][kind] if p != "overall"]
    has_overall = "overall" in results[0][kind]
    head = ["scorer"] + props + (["mean (matched)"] if has_overall else [])
    rows = []
    for r in results:
        cells = [f"{r['name']} (c={r['fixed_context']})" if kind == "fixed" else r["name"]]
        for p in props + (["overall"] if has_overall else []):
            m = r[kind][p]
            cells.append(f"{100 * m[metric]:.1f}" + (f" [{100 * m[metric + '_ci'][0]:.0f},{100 * m[metric + '_ci'][1]:.0f}]"
                                                     if metric + "_ci" in m and np.isfinite(m[metric + "_ci"][0]) else ""))
        rows.append(cells)
    return _table(head, rows)


def _table(head: list[str], rows: list[list[str]]) -> str:
    """Left-aligned columns under a header and a rule."""
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths))
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in rows])


def format_separation(results: list[dict]) -> str:
    """The representation gap of every scorer that has one (``result["separation"]``), per property."""
    rows = [r for r in results if r.get("separation")]
    if not rows:
        return ""
    props = list(rows[0]["separation"])
    return _table(["scorer"] + props, [[r["name"]] + [f"{r['separation'][p]:.3f}" for p in props] for r in rows])


def format_expectation(results: list[dict]) -> str:
    """Per scorer and property, the share of predictions made before the violation that lie nearer the
    possible future than the impossible one (``result["expectation"]``), in %."""
    rows = [r for r in results if r.get("expectation")]
    if not rows:
        return ""
    props = list(rows[0]["expectation"])
    cell = lambda e: "-" if not e["predictions"] else f"{100 * e['share']:.0f} ({e['predictions']})"
    return _table(["scorer"] + props, [[r["name"]] + [cell(r["expectation"][p]) for p in props] for r in rows])


def curves_svg(result: dict, width: int = 900, panel_h: int = 150) -> str:
    """Surprise over time aligned on the violation frame, one panel per property (plain SVG)."""
    props = list(result["curves"])
    cols = 3
    rows = math.ceil(len(props) / cols)
    pw = width // cols
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{rows * panel_h + 30}" font-family="sans-serif" font-size="11">',
             f'<text x="8" y="16" font-size="13">{result["name"]}: mean surprise aligned on the violation frame '
             f'(context {result["fixed_context"]}); blue possible, red impossible</text>']
    for i, prop in enumerate(props):
        cur = result["curves"][prop]
        x0, y0 = (i % cols) * pw + 40, (i // cols) * panel_h + 40
        w, h = pw - 55, panel_h - 40
        vals = [v for k in ("possible", "impossible") for v in cur[k] if v is not None]
        top = max(vals) if vals and max(vals) > 0 else 1.0
        offs = cur["offset"]
        sx = lambda o: x0 + (o - offs[0]) / max(1, offs[-1] - offs[0]) * w
        sy = lambda v: y0 + h - v / top * h
        parts.append(f'<rect x="{x0}" y="{y0}" width="{w}" height="{h}" fill="none" stroke="#999"/>')
        parts.append(f'<line x1="{sx(0):.1f}" y1="{y0}" x2="{sx(0):.1f}" y2="{y0 + h}" stroke="#666" stroke-dasharray="3,3"/>')
        parts.append(f'<text x="{x0}" y="{y0 - 4}">{prop}</text><text x="{x0 + w - 60}" y="{y0 - 4}">max {top:.3g}</text>')
        for kind, colour in (("possible", "#1f77b4"), ("impossible", "#d62728")):
            pts = " ".join(f"{sx(o):.1f},{sy(v):.1f}" for o, v in zip(offs, cur[kind]) if v is not None)
            parts.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"/>')
        parts.append(f'<text x="{sx(0) - 3:.1f}" y="{y0 + h + 12}">0</text>')
    parts.append("</svg>")
    return "\n".join(parts)
