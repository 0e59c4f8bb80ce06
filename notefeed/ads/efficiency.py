"""The efficiency model of serving: a logistic pCTR trained on the impressions serving logged.

Serving (``serve/adslots.py``) appends every ad it shows to ``<workspace>/ads/impressions.jsonl``
with the features it saw at that moment and the pCTR that priced it, and every first click and
conversion on it. ``notefeed ads train-pctr`` (:func:`train_workspace_pctr`) joins them, fits a
logistic regression, checks it on the latest impressions (a time split) against the pCTR that
served them, and writes ``<workspace>/ads/pctr/`` (``model.safetensors`` + ``config.json``)
only when it predicts the held-out clicks better (lower log-loss). A server with ``pctr: model``
in ``<workspace>/ads/serving.json`` prices with it, picking up a new one within 2 s; by default,
and without a model, serving prices by the ad's smoothed CTR x (0.5 + relevance): on the
simulator the trained model predicted clicks better offline but got 3% fewer clicks and 21% less
revenue online
(``notefeed eval --stage ads --param ads.load=serving-pctr``, :mod:`notefeed.sim.ads_serving`).

Features (:data:`FEATURES`, one row per (request, ad)): the ad simulator's ``evidence`` set
(:func:`~notefeed.ads.recall.evidence_features`: text cosine, keyword match score and hit, logit
of the ad's smoothed CTR, two-tower cosine, rewrite match score and hit; each channel's own
score for the pair, 0 where the channel does not match), and two that feed ads add: the share
of the user's recent history in the ad's category, and a feed/search flag. The ad's CTR is the
one serving had *before* the impression, so unlike the simulator's offline log it does not
contain the row's own click.

Known bias: the log holds auction winners only, chosen by the pCTR that served them.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from notefeed.ads.recall import evidence_features, pctr_features

__all__ = ["FEATURES", "IMPRESSION_LOG", "ROTATED_IMPRESSION_LOG", "PCTR_DIR", "EfficiencyModel", "serving_features", "read_impressions",
           "train_workspace_pctr", "load_workspace_pctr"]

FEATURES = ("text_cos", "keyword_score", "keyword_hit", "ctr_logit", "tower_cos", "rewrite_score", "rewrite_hit",
            "category_share", "feed")
IMPRESSION_LOG = "impressions.jsonl"
#: the impression log rotated once (serving keeps one older file; training reads both)
ROTATED_IMPRESSION_LOG = IMPRESSION_LOG.replace(".jsonl", ".1.jsonl")
PCTR_DIR = "pctr"
FORMAT = 1
P_MIN, P_MAX = 1e-6, 0.99


def serving_features(text_cos: np.ndarray, keyword: np.ndarray, ad_ctr: np.ndarray, tower_cos: np.ndarray,
                     rewrite: np.ndarray, category_share: np.ndarray, feed: bool) -> np.ndarray:
    """(n, len(FEATURES)) float64, columns in :data:`FEATURES` order."""
    x = evidence_features(pctr_features(np.asarray(text_cos, np.float64), keyword, ad_ctr), tower_cos, rewrite)
    n = len(x)
    return np.column_stack([x, np.asarray(category_share, np.float64), np.full(n, float(feed))])


class EfficiencyModel:
    """pCTR = sigmoid(x . coef + intercept), clipped to [1e-6, 0.99]; numpy only at serving."""

    def __init__(self, coef: np.ndarray, intercept: float, features: tuple[str, ...] = FEATURES,
                 info: dict | None = None) -> None:
        coef = np.asarray(coef, np.float64).reshape(-1)
        if len(coef) != len(features):
            raise ValueError(f"efficiency model: {len(coef)} weights for {len(features)} features")
        if not (np.isfinite(coef).all() and math.isfinite(intercept)):
            raise ValueError("efficiency model: weights must be finite")
        self.coef, self.intercept, self.features, self.info = coef, float(intercept), tuple(features), info or {}

    def pctr(self, x: np.ndarray) -> np.ndarray:
        z = np.asarray(x, np.float64) @ self.coef + self.intercept
        return np.clip(1.0 / (1.0 + np.exp(-np.clip(z, -30, 30))), P_MIN, P_MAX)

    def save(self, path: str | Path) -> None:
        from safetensors.numpy import save_file

        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        save_file({"coef": self.coef.astype(np.float64), "intercept": np.array([self.intercept])},
                  str(p / "model.safetensors"))
        (p / "config.json").write_text(json.dumps({"format": FORMAT, "kind": "logistic", "features": list(self.features),
                                                   **self.info}, indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> EfficiencyModel:
        """Raises ``ValueError`` naming the file for a missing, corrupt or mismatched bundle."""
        from safetensors.numpy import load_file

        p = Path(path)
        try:
            cfg = json.loads((p / "config.json").read_text(encoding="utf-8"))
            w = load_file(str(p / "model.safetensors"))
        except (OSError, ValueError) as e:
            raise ValueError(f"efficiency model: cannot read {p}: {e}") from None
        except Exception as e:  # safetensors' own errors on a torn file
            raise ValueError(f"efficiency model: cannot read {p}: {e}") from None
        if not isinstance(cfg, dict) or cfg.get("format") != FORMAT or cfg.get("kind") != "logistic":
            raise ValueError(f"efficiency model: {p / 'config.json'} is not a format-{FORMAT} logistic model")
        feats = tuple(cfg.get("features") or ())
        if feats != FEATURES:
            raise ValueError(f"efficiency model: {p} reads features {list(feats)}, serving gives {list(FEATURES)}")
        if "coef" not in w or "intercept" not in w:
            raise ValueError(f"efficiency model: {p / 'model.safetensors'} lacks 'coef' or 'intercept'")
        info = {k: v for k, v in cfg.items() if k not in ("format", "kind", "features")}
        return cls(w["coef"], float(np.asarray(w["intercept"]).reshape(-1)[0]), feats, info)


def load_workspace_pctr(workspace: str | Path) -> EfficiencyModel | None:
    """The trained model in ``<workspace>/ads/pctr/``, or None when there is none."""
    p = Path(workspace) / "ads" / PCTR_DIR
    if not (p / "model.safetensors").exists():
        return None
    return EfficiencyModel.load(p)


def _lines(paths: list[Path]) -> Iterator[dict]:
    """Each line's JSON object; an empty dict for a torn or malformed line."""
    for path in paths:
        if not path.exists():
            continue
        with path.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    d = json.loads(line)
                except ValueError:
                    d = None
                yield d if isinstance(d, dict) else {}


def read_impressions(ads_dir: str | Path, explore_only: bool = False
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """(features (n, len(FEATURES)), clicked (n,) 0/1, served pCTR (n,), ts (n,), skipped lines) of
    the impressions logged in ``ads_dir`` (the rotated ``impressions.1.jsonl`` first); a torn or
    malformed line is skipped and counted; a click on an impression not in the log is ignored.
    ``explore_only``: only the impressions of exploration requests (``explore: 1``, slots given
    in random order, see ``AdSlotsConfig.explore``)."""
    d = Path(ads_dir)
    paths = [d / ROTATED_IMPRESSION_LOG, d / IMPRESSION_LOG]
    rows: dict[str, tuple[list[float], float, float]] = {}
    clicked: set[str] = set()
    skipped = 0
    k = len(FEATURES)
    for e in _lines(paths):
        t, i = e.get("t"), e.get("id")
        if not isinstance(i, str):
            skipped += 1
        elif t == "imp":
            x, p, ts = e.get("x"), e.get("p"), e.get("ts")
            if (isinstance(x, list) and len(x) == k and all(isinstance(v, int | float) and math.isfinite(v) for v in x)
                    and isinstance(p, int | float) and 0 < p < 1 and isinstance(ts, int | float)):
                if e.get("explore") or not explore_only:
                    rows[i] = ([float(v) for v in x], float(p), float(ts))
            else:
                skipped += 1
        elif t == "click":
            clicked.add(i)
        elif t != "conv":
            skipped += 1
    ids = list(rows)
    x = np.array([rows[i][0] for i in ids], np.float64).reshape(len(ids), k)
    y = np.array([i in clicked for i in ids], np.float64)
    p = np.array([rows[i][1] for i in ids], np.float64)
    ts = np.array([rows[i][2] for i in ids], np.float64)
    return x, y, p, ts, skipped


def _logloss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, P_MIN, 1 - P_MIN)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _auc(y: np.ndarray, p: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else None


def _fit(x: np.ndarray, y: np.ndarray, c: float) -> EfficiencyModel:
    from sklearn.linear_model import LogisticRegression

    m = LogisticRegression(C=c, max_iter=500).fit(x, y)
    return EfficiencyModel(m.coef_[0], float(m.intercept_[0]))


def train_workspace_pctr(workspace: str | Path, min_clicks: int = 100, holdout: float = 0.2, c: float = 1.0,
                         force: bool = False, explore_only: bool = False) -> dict:
    """Fit the efficiency model on ``<workspace>/ads/impressions.jsonl`` and write
    ``<workspace>/ads/pctr/`` when it beats the served pCTR on held-out clicks.

    The latest ``holdout`` share of impressions (by time) is held out; a model fitted on the rest
    is scored there against the pCTR that served those impressions (log-loss, AUC). Only when its
    log-loss is lower (or ``force``) is the model refitted on all impressions and written (atomic
    swap of the folder). Returns a summary; ``written`` says whether the folder was replaced.
    Raises ``ValueError`` with fewer than ``min_clicks`` logged clicks, or with no click (or no
    non-click) in either part. ``explore_only``: fit and check on the exploration impressions
    only (no selection by the served pCTR)."""
    if not 0 < holdout < 1:
        raise ValueError(f"train-pctr: holdout must be in (0, 1), got {holdout}")
    ws = Path(workspace) / "ads"
    x, y, p, ts, skipped = read_impressions(ws, explore_only)
    n_clicks = int(y.sum())
    if n_clicks < max(2, min_clicks):
        raise ValueError(f"train-pctr: {n_clicks} clicks on {len(y)} logged impressions in {ws / IMPRESSION_LOG}, "
                         f"need {max(2, min_clicks)}")
    o = np.argsort(ts, kind="stable")
    cut = int(round(len(o) * (1 - holdout)))
    tr, te = o[:cut], o[cut:]
    for name, part in (("training", tr), ("held-out", te)):
        if not 0 < y[part].sum() < len(part):
            raise ValueError(f"train-pctr: the {name} impressions need clicks and non-clicks "
                             f"({int(y[part].sum())} of {len(part)} clicked)")
    held = _fit(x[tr], y[tr], c)
    q = held.pctr(x[te])
    check = {"impressions": int(len(te)), "clicks": int(y[te].sum()),
             "logloss_model": round(_logloss(y[te], q), 5), "logloss_served": round(_logloss(y[te], p[te]), 5),
             "auc_model": _auc(y[te], q), "auc_served": _auc(y[te], p[te]),
             "mean_pctr_model": round(float(q.mean()), 5), "mean_pctr_served": round(float(p[te].mean()), 5),
             "ctr": round(float(y[te].mean()), 5)}
    better = check["logloss_model"] < check["logloss_served"]
    out = {"impressions": int(len(y)), "clicks": n_clicks, "explore_only": explore_only, "skipped_lines": skipped,
           "holdout": check,
           "beats_served": bool(better), "written": False, "path": str(ws / PCTR_DIR)}
    if not (better or force):
        return out
    model = _fit(x, y, c)
    model.info = {"impressions": int(len(y)), "clicks": n_clicks, "explore_only": explore_only, "holdout": check,
                  "coef": {f: round(float(v), 5) for f, v in zip(FEATURES, model.coef, strict=True)}}
    tmp = ws / f".{PCTR_DIR}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save(tmp)
    old = ws / f".{PCTR_DIR}.old"
    shutil.rmtree(old, ignore_errors=True)
    if (ws / PCTR_DIR).exists():
        os.replace(ws / PCTR_DIR, old)
    os.replace(tmp, ws / PCTR_DIR)
    shutil.rmtree(old, ignore_errors=True)
    out.update(written=True, coef=model.info["coef"])
    return out
