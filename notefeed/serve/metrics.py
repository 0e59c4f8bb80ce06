"""Minimal Prometheus text-format metrics: counters and histograms with labels, thread-safe."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Sequence

__all__ = ["Metrics", "LATENCY_BUCKETS_MS"]

LATENCY_BUCKETS_MS: tuple[float, ...] = (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000)


def _labels(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    esc = [str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for v in values]
    return "{" + ",".join(f'{n}="{v}"' for n, v in zip(names, esc, strict=True)) + "}"


class Metrics:
    """Registry of named counters and histograms; :meth:`render` gives the exposition text."""

    def __init__(self, namespace: str = "notefeed") -> None:
        self.ns = namespace
        self._lock = threading.Lock()
        self._help: dict[str, tuple[str, str, tuple[str, ...]]] = {}
        self._counters: dict[str, dict[tuple[str, ...], float]] = {}
        self._hists: dict[str, dict[tuple[str, ...], list[float]]] = {}
        self._buckets: dict[str, tuple[float, ...]] = {}

    def counter(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        self._help[name] = ("counter", help, tuple(labels))
        self._counters[name] = {}

    def histogram(self, name: str, help: str, labels: Sequence[str] = (),
                  buckets: Sequence[float] = LATENCY_BUCKETS_MS) -> None:
        self._help[name] = ("histogram", help, tuple(labels))
        self._hists[name] = {}
        self._buckets[name] = tuple(buckets)

    def inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        key = tuple(str(labels[n]) for n in self._help[name][2])
        with self._lock:
            c = self._counters[name]
            c[key] = c.get(key, 0.0) + value

    def observe(self, name: str, value: float, **labels: str) -> None:
        key = tuple(str(labels[n]) for n in self._help[name][2])
        b = self._buckets[name]
        with self._lock:
            h = self._hists[name].get(key)
            if h is None:
                h = self._hists[name][key] = [0.0] * (len(b) + 3)  # buckets, +Inf, sum, count
            h[bisect.bisect_left(b, value)] += 1
            h[-2] += value
            h[-1] += 1

    def value(self, name: str, **labels: str) -> float:
        key = tuple(str(labels[n]) for n in self._help[name][2])
        with self._lock:
            if name in self._counters:
                return self._counters[name].get(key, 0.0)
            h = self._hists[name].get(key)
            return h[-1] if h else 0.0

    def snapshot(self) -> dict[str, dict[tuple[str, ...], list[float]]]:
        """A copy of every series: counters as ``[value]``, histograms as per-bucket counts
        (``buckets`` order, then +Inf), sum, count; keyed by name, then label values."""
        with self._lock:
            out = {n: {k: [v] for k, v in c.items()} for n, c in self._counters.items()}
            out.update({n: {k: list(h) for k, h in hs.items()} for n, hs in self._hists.items()})
        return out

    def buckets(self, name: str) -> tuple[float, ...]:
        return self._buckets[name]

    def label_names(self, name: str) -> tuple[str, ...]:
        return self._help[name][2]

    def render(self) -> str:
        out: list[str] = []
        with self._lock:
            for name, (kind, help, lnames) in self._help.items():
                full = f"{self.ns}_{name}"
                out.append(f"# HELP {full} {help}")
                out.append(f"# TYPE {full} {kind}")
                if kind == "counter":
                    for key, v in sorted(self._counters[name].items()):
                        out.append(f"{full}{_labels(lnames, key)} {v:g}")
                    continue
                b = self._buckets[name]
                for key, h in sorted(self._hists[name].items()):
                    acc = 0.0
                    for i, le in enumerate((*[f"{x:g}" for x in b], "+Inf")):
                        acc += h[i]
                        out.append(f"{full}_bucket{_labels((*lnames, 'le'), (*key, le))} {acc:g}")
                    out.append(f"{full}_sum{_labels(lnames, key)} {h[-2]:g}")
                    out.append(f"{full}_count{_labels(lnames, key)} {h[-1]:g}")
        return "\n".join(out) + "\n"
