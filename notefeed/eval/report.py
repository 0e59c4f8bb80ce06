"""Static HTML reports: one table of result rows plus matplotlib figures (Agg backend).

:func:`write_report` is generic: every stage passes its rows and a mapping ``name ->``
either a callable returning a matplotlib ``Figure`` or the path of an existing PNG.
"""

from __future__ import annotations

import html
import json
import math
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # reports are written headless (CI, servers)
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

__all__ = ["write_report", "FigureSpec", "model_figures", "bar_figure"]

FigureSpec = Callable[[], Figure] | str | Path


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "figure"


def write_report(
    out_dir: str | Path,
    title: str,
    rows: Sequence[Mapping[str, Any]],
    figures: Mapping[str, FigureSpec] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``out_dir/index.html`` with a table of ``rows`` and the figures as PNGs.

    ``figures``: ``name -> callable() -> Figure`` (rendered at 110 dpi, then closed) or
    ``name -> path`` of a PNG (copied). Returns the path of ``index.html``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    imgs: list[tuple[str, str]] = []
    for name, spec in (figures or {}).items():
        fname = _slug(name) + ".png"
        if isinstance(spec, str | Path):
            src = Path(spec)
            if not src.is_file():
                raise FileNotFoundError(f"figure {name!r}: no PNG at {src}")
            if src.resolve() != (out / fname).resolve():
                shutil.copyfile(src, out / fname)
        elif callable(spec):
            fig = spec()
            if not isinstance(fig, Figure):
                raise TypeError(f"figure {name!r}: the callable returned {type(fig).__name__}, not a Figure")
            fig.savefig(out / fname, dpi=110, bbox_inches="tight")
            plt.close(fig)
        else:
            raise TypeError(f"figure {name!r}: expected a callable or a PNG path, got {type(spec).__name__}")
        imgs.append((name, fname))

    cols: list[str] = []
    for r in rows:
        cols.extend(c for c in r if c not in cols)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "\n".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c, '')))}</td>" for c in cols) + "</tr>" for r in rows
    )
    figs = "\n".join(
        f'<figure><img src="{html.escape(f)}" alt="{html.escape(n)}"><figcaption>{html.escape(n)}</figcaption></figure>'
        for n, f in imgs
    )
    meta_html = f"<pre>{html.escape(json.dumps(dict(meta), indent=2, default=str))}</pre>" if meta else ""
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; font-size: 12px; }}
td, th {{ border: 1px solid #ccc; padding: 3px 6px; text-align: right; }}
th {{ background: #f4f4f4; position: sticky; top: 0; }}
figure {{ display: inline-block; margin: 1em; }}
img {{ max-width: 640px; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
{meta_html}
<div style="overflow-x:auto"><table><thead><tr>{head}</tr></thead><tbody>
{body}
</tbody></table></div>
{figs}
</body></html>
"""
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


def bar_figure(rows: Sequence[Mapping[str, Any]], metric: str, group: str = "dataset", hue: str = "model") -> Figure:
    """Grouped bars of ``metric``: one group per ``group`` value, one bar per ``hue`` value."""
    groups = list(dict.fromkeys(str(r[group]) for r in rows))
    hues = list(dict.fromkeys(str(r[hue]) for r in rows))
    fig, ax = plt.subplots(figsize=(1.5 + 1.2 * len(groups) * max(1, len(hues)) / 3, 3.5))
    width = 0.8 / max(1, len(hues))
    for j, h in enumerate(hues):
        ys = [
            next((float(r[metric]) for r in rows if str(r[group]) == g and str(r[hue]) == h and metric in r), math.nan)
            for g in groups
        ]
        ax.bar([i + j * width for i in range(len(groups))], ys, width, label=h)
    ax.set_xticks([i + width * (len(hues) - 1) / 2 for i in range(len(groups))], groups)
    ax.set_ylabel(metric)
    ax.legend(fontsize=8)
    ax.set_title(metric)
    return fig


def _scatter(rows: Sequence[Mapping[str, Any]], x: str, y: str) -> Figure:
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    for r in rows:
        if x in r and y in r:
            ax.scatter(float(r[x]), float(r[y]))
            ax.annotate(f"{r.get('dataset', '')}/{r.get('model', '')}", (float(r[x]), float(r[y])), fontsize=7)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(f"{y} vs {x}")
    return fig


def _recall_curve(rows: Sequence[Mapping[str, Any]], ks: Sequence[int]) -> Figure:
    """One panel per dataset (their scales differ by orders of magnitude), one line per model."""
    datasets = list(dict.fromkeys(str(r.get("dataset", "")) for r in rows)) or [""]
    fig, axes = plt.subplots(1, len(datasets), figsize=(3.6 * len(datasets), 3.3), squeeze=False)
    for ax, d in zip(axes[0], datasets, strict=True):
        for r in rows:
            if str(r.get("dataset", "")) == d:
                ax.plot(list(ks), [float(r[f"recall@{k}"]) for k in ks], marker="o", label=str(r.get("model", "")))
        ax.set_xlabel("k")
        ax.set_ylabel("recall@k")
        ax.set_title(d)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def model_figures(rows: Sequence[Mapping[str, Any]], ks: Sequence[int]) -> dict[str, FigureSpec]:
    """The model stage's figures: NDCG/recall bars at the smallest k, recall curves,
    accuracy vs coverage and novelty, fit time."""
    k = min(ks)
    return {
        f"ndcg@{k}": lambda: bar_figure(rows, f"ndcg@{k}"),
        f"recall@{max(ks)}": lambda: bar_figure(rows, f"recall@{max(ks)}"),
        "recall curves": lambda: _recall_curve(rows, ks),
        f"ndcg vs coverage @{k}": lambda: _scatter(rows, f"coverage@{k}", f"ndcg@{k}"),
        f"ndcg vs novelty @{k}": lambda: _scatter(rows, f"novelty@{k}", f"ndcg@{k}"),
        "fit seconds": lambda: bar_figure(rows, "fit_s"),
    }
