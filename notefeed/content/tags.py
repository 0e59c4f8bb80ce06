"""Tags and topics for new notes from their content: nearest tag centroids.

A tag's centroid is the mean content vector of the notes carrying it (after removing the
catalogue mean, which every note shares and which would otherwise dominate the cosine). A
new note gets the ``k`` tags whose centroids are nearest, keeping only those with cosine of
at least ``threshold``. :func:`precision_at_k` scores predictions against held-out true tags;
:func:`popular_tags` is the baseline that ignores content.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from notefeed.content._common import ContentError, check_matrix, l2_normalise, load_artifact, save_artifact

__all__ = ["tag_centroids", "TagPredictor", "precision_at_k", "popular_tags", "tune_threshold"]

_KIND = "notefeed.content.TagPredictor"


def _check_tags(tags: object, rows: int) -> list[list[str]]:
    if not isinstance(tags, Sequence) or isinstance(tags, str):
        raise ContentError(f"tags: expected one list of tags per note, got {type(tags).__name__}")
    if len(tags) != rows:
        raise ContentError(f"tags: {len(tags)} rows, vectors have {rows}")
    out = []
    for i, t in enumerate(tags):
        if t is None:
            out.append([])
            continue
        if isinstance(t, str) or not isinstance(t, Sequence | np.ndarray):
            raise ContentError(f"tags[{i}]: expected a list of str, got {type(t).__name__}")
        out.append([str(x) for x in t])
    return out


def tag_centroids(
    vectors: np.ndarray, tags: Sequence[Sequence[str]], min_count: int = 2, center: np.ndarray | None = None
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Unit mean vector of the notes carrying each tag seen on at least ``min_count`` notes.

    Shapes: vectors (n, d), center (d,) subtracted first -> (names (T,), centroids (T, d),
    counts (T,) int64), names sorted by descending count then name.
    """
    v = check_matrix(vectors, "vectors")
    tg = _check_tags(tags, v.shape[0])
    if center is not None:
        v = v - np.asarray(center, np.float32)[None, :]
    counts = Counter(t for row in tg for t in set(row))
    names = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
    if not names:
        raise ContentError(f"tags: no tag is carried by at least min_count={min_count} notes")
    col = {t: j for j, t in enumerate(names)}
    sums = np.zeros((len(names), v.shape[1]), np.float64)
    for i, row in enumerate(tg):
        for t in set(row):
            j = col.get(t)
            if j is not None:
                sums[j] += v[i]
    return names, l2_normalise(sums.astype(np.float32)), np.array([counts[t] for t in names], np.int64)


class TagPredictor:
    """Predict tags of notes from content vectors by nearest tag centroids."""

    name = "content/tag-centroids"

    def __init__(
        self,
        k: int = 3,
        threshold: float = 0.0,
        min_count: int = 2,
        center: bool = True,
        fill_popular: bool = False,
        prior_weight: float = 0.0,
    ) -> None:
        if k < 1:
            raise ContentError(f"k: must be >= 1, got {k}")
        if prior_weight < 0:
            raise ContentError(f"prior_weight: must be >= 0, got {prior_weight}")
        # score = cosine + prior_weight * log(tag frequency): a nearest-centroid classifier with a
        # class prior, so that a rare tag needs a clearly closer centroid to beat a common one
        self.prior_weight = prior_weight
        self.k, self.threshold, self.min_count, self.center = k, threshold, min_count, center
        # a note whose content is too weak for k confident tags gets the most frequent tags
        # in the free slots, so thresholding never loses to the content-blind baseline by default
        self.fill_popular = fill_popular
        self.names_: list[str] = []
        self.centroids_: np.ndarray | None = None
        self.mean_: np.ndarray | None = None
        self.counts_: np.ndarray | None = None

    def fit(self, vectors: np.ndarray, tags: Sequence[Sequence[str]]) -> TagPredictor:
        v = check_matrix(vectors, "vectors")
        self.mean_ = v.mean(axis=0) if self.center else np.zeros(v.shape[1], np.float32)
        self.names_, self.centroids_, self.counts_ = tag_centroids(v, tags, self.min_count, self.mean_)
        return self

    def scores(self, vectors: np.ndarray) -> np.ndarray:
        """Cosine of each note to each tag centroid: (n, d) -> (n, T)."""
        if self.centroids_ is None or self.mean_ is None:
            raise ContentError("TagPredictor: call fit() or load() first")
        v = check_matrix(vectors, "vectors", dim=self.centroids_.shape[1])
        s = l2_normalise(v - self.mean_[None, :]) @ self.centroids_.T
        if self.prior_weight > 0 and self.counts_ is not None:
            s = s + self.prior_weight * np.log(self.counts_ / self.counts_.max()).astype(np.float32)[None, :]
        return s

    def predict(self, vectors: np.ndarray, k: int | None = None) -> list[list[tuple[str, float]]]:
        """Per note, up to ``k`` (tag, score) pairs with score >= threshold, best first.

        The score is the cosine to the tag centroid (plus the log-prior term when ``prior_weight > 0``).
        """
        k = self.k if k is None else k
        s = self.scores(vectors)
        kk = min(k, s.shape[1])
        top = np.argsort(-s, axis=1, kind="stable")[:, :kk]
        out = []
        for i in range(s.shape[0]):
            row = [(self.names_[j], float(s[i, j])) for j in top[i] if s[i, j] >= self.threshold]
            if self.fill_popular and len(row) < kk:
                have = {t for t, _ in row}
                row += [(t, float(s[i, j])) for j, t in enumerate(self.names_) if t not in have][: kk - len(row)]
            out.append(row)
        return out

    def predict_tags(self, vectors: np.ndarray, k: int | None = None) -> list[list[str]]:
        return [[t for t, _ in row] for row in self.predict(vectors, k)]

    def save(self, folder: str | Path) -> Path:
        if self.centroids_ is None or self.mean_ is None or self.counts_ is None:
            raise ContentError("TagPredictor: nothing to save, call fit() first")
        cfg = {"k": self.k, "threshold": self.threshold, "min_count": self.min_count, "center": self.center,
               "fill_popular": self.fill_popular, "prior_weight": self.prior_weight, "names": self.names_}
        return save_artifact(folder, _KIND, cfg, {"centroids": self.centroids_, "mean": self.mean_, "counts": self.counts_})

    @classmethod
    def load(cls, folder: str | Path) -> TagPredictor:
        cfg, t = load_artifact(folder, _KIND, {"centroids": (-1, -1), "mean": (-1,), "counts": (-1,)})
        try:
            m = cls(int(cfg["k"]), float(cfg["threshold"]), int(cfg["min_count"]), bool(cfg["center"]),
                    bool(cfg["fill_popular"]), float(cfg["prior_weight"]))
            names = [str(x) for x in cfg["names"]]
        except (KeyError, TypeError, ValueError) as e:
            raise ContentError(f"{Path(folder) / 'config.json'}: incomplete config ({e})") from None
        c = t["centroids"]
        if c.shape[0] != len(names) or t["mean"].shape[0] != c.shape[1] or t["counts"].shape[0] != len(names):
            raise ContentError(f"{Path(folder) / 'weights.safetensors'}: tensor shapes do not match {len(names)} names")
        m.names_, m.centroids_, m.mean_, m.counts_ = names, c.astype(np.float32), t["mean"].astype(np.float32), t["counts"]
        return m


def popular_tags(train_tags: Sequence[Sequence[str]], k: int) -> list[str]:
    """The ``k`` most frequent tags (content-blind baseline), ties by name."""
    counts = Counter(t for row in train_tags for t in set(row))
    return sorted(counts, key=lambda t: (-counts[t], t))[:k]


def precision_at_k(pred: Sequence[Sequence[str]], true: Sequence[Sequence[str]], k: int) -> float:
    """Mean over notes with at least one true tag of ``|pred[:k] & true| / k``."""
    if len(pred) != len(true):
        raise ContentError(f"pred: {len(pred)} rows, true has {len(true)}")
    vals = [len(set(p[:k]) & set(t)) / k for p, t in zip(pred, true, strict=True) if len(t)]
    return float(np.mean(vals)) if vals else float("nan")


def tune_threshold(
    vectors: np.ndarray,
    tags: Sequence[Sequence[str]],
    grid: Sequence[float] = (-1.0, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5),
    prior_grid: Sequence[float] = (0.0,),
    k: int = 1,
    seed: int = 0,
    **params: object,
) -> tuple[float, float]:
    """``(threshold, prior_weight)`` with the best precision@k on a 20% validation split.

    Use on training notes only; ``params`` go to :class:`TagPredictor` (e.g. ``fill_popular=True``).
    """
    v = check_matrix(vectors, "vectors")
    tg = _check_tags(tags, v.shape[0])
    perm = np.random.default_rng(seed).permutation(v.shape[0])
    n_val = max(1, len(perm) // 5)
    val, tr = perm[:n_val], perm[n_val:]
    best, best_p = (float(grid[0]), float(prior_grid[0])), -1.0
    for pw in prior_grid:
        tp = TagPredictor(k=k, prior_weight=float(pw), **params).fit(v[tr], [tg[i] for i in tr])  # type: ignore[arg-type]
        for th in grid:
            tp.threshold = float(th)
            p = precision_at_k(tp.predict_tags(v[val]), [tg[i] for i in val], k)
            if p > best_p:
                best, best_p = (float(th), float(pw)), p
    return best
