"""Exposure control per request: the ``policy/fixed`` and ``policy/rl`` pipeline steps.

A scorer step after fusion. It reads real-time state for this request (:func:`observation`:
the user's recent engagement and session depth from the online state, the composition of the
fused leaders: creator-size mix, new notes, popularity, early CTR, topics, interest match) and sets four
exposure knobs (:data:`~notefeed.serve.config.EXPOSURE_KNOBS`), each a weight in units of the
fused score's standard deviation (:func:`apply_knobs`):

- ``small_boost``: added to notes of small creators (< 1,000 followers);
- ``fresh_boost``: times the note's recency (exp(-age / 1 day)): exposure for new notes;
- ``explore``: times the negative z-score of log popularity: exposure for little-seen notes;
- ``interest``: times the note category's share of the user's recent history.

``policy/fixed`` applies the configured knobs to every request. ``policy/rl`` asks a learned
policy (:class:`KnobPolicy`: a small MLP saved as safetensors + JSON, evaluated with numpy,
trained in the simulator by ``notefeed rl train``; or :class:`KnobEnsemble`, several of them
whose knobs are averaged, made by ``notefeed rl ensemble``) for each request's knobs, and falls back
to the configured knobs when no policy is loaded or the observation or the answer is not
finite. The knobs at zero leave the fused order as it was.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from notefeed.models.artifacts import ModelError
from notefeed.recall.base import UserContext
from notefeed.registry import Registry
from notefeed.serve.catalog import Catalog
from notefeed.serve.config import EXPOSURE_KNOB_HIGH, EXPOSURE_KNOBS, ExposureConfig
from notefeed.serve.pipeline import CandidateSet

__all__ = ["OBS_NAMES", "KNOBS", "KNOB_HIGH", "observation", "apply_knobs", "KnobPolicy", "KnobEnsemble",
           "load_policy", "ExposureStep", "EXPOSURE_STEPS", "make_exposure_step"]

KNOBS: tuple[str, ...] = EXPOSURE_KNOBS
KNOB_HIGH = EXPOSURE_KNOB_HIGH
#: the observation, in column order (all roughly in [0, 5]; see :func:`observation`)
OBS_NAMES: tuple[str, ...] = (
    "user_pos_5m", "user_pos_1h", "session_depth", "user_online_ctr", "history_len",
    "small_share_top", "small_share_all", "fresh_share_top", "log_pop_top", "small_gap",
    "topic_entropy_top", "interest_top", "n_candidates", "small_share_served", "ctr_top",
)
#: a note's early CTR is shrunk toward all notes' CTR as if it had this many more impressions
_CTR_PRIOR = 20.0
#: the pages whose small-creator share ``small_share_served`` follows: the top this many of the
#: step's output order, averaged over about ``_SERVED_MEMORY`` requests (exponentially)
_PAGE = 10
_SERVED_MEMORY = 50.0
_DAY = 86400.0


def _z(x: np.ndarray) -> np.ndarray:
    sd = float(x.std())
    return (x - float(x.mean())) / sd if sd > 1e-9 else np.zeros_like(x)


def _signals(ctx: UserContext, cs: CandidateSet, catalog: Catalog) -> dict[str, np.ndarray]:
    """(n,) per-candidate signals the knobs weigh, and the fused score's z-score."""
    it = cs.items
    fused = cs.columns.get("fused", cs.columns.get("coarse", cs.columns.get("recall")))
    base = _z(np.asarray(fused, np.float64)) if fused is not None else np.zeros(len(it))
    age = np.maximum(0, ctx.ts - catalog.created_at()[it]) / _DAY
    logpop = np.log1p(catalog.popularity()[it].astype(np.float64))
    cats = catalog.category_codes()[it]
    interest = np.zeros(len(it))
    hist = ctx.history[-50:] if len(ctx.history) else ctx.history
    hist = hist[hist < catalog.n_items]
    if len(hist):
        hc = np.bincount(catalog.category_codes()[hist], minlength=int(cats.max(initial=0)) + 1)
        interest = hc[np.minimum(cats, len(hc) - 1)] / len(hist) * (cats < len(hc))
    return {"base": base, "small": catalog.small_creator(it).astype(np.float64), "fresh": np.exp(-age),
            "logpop": logpop, "novel": -_z(logpop), "interest": interest, "cats": cats}


def observation(ctx: UserContext, cs: CandidateSet, catalog: Catalog, window: int = 20,
                signals: dict[str, np.ndarray] | None = None, served_small: float | None = None) -> np.ndarray:
    """(len(OBS_NAMES),) float32 state of one request, from the candidates entering the step
    (``fused`` column: the top ``window`` are the page's likely composition; ``ctr_top`` is their
    mean early CTR, clicks over impressions so far, each shrunk toward all notes' CTR by
    :data:`_CTR_PRIOR` impressions), the user's
    online snapshot (``ctx.snapshot``, when the context has one) and ``served_small``, the
    small-creator share of the pages served lately (None: not known yet; this request's
    leaders stand in)."""
    obs = np.zeros(len(OBS_NAMES), np.float32)
    snap = getattr(ctx, "snapshot", None)
    if snap is not None:
        obs[0] = math.log1p(sum(snap.counts.get("5m", {}).values()))
        obs[1] = math.log1p(sum(snap.counts.get("1h", {}).values()))
        n_seen = len(snap.seen)
        obs[2] = math.log1p(n_seen)
        obs[3] = min(max(snap.n_events - n_seen, 0) / max(n_seen, 1), 5.0)  # online positives per impression
    obs[4] = math.log1p(len(ctx.history))
    n = len(cs)
    obs[12] = math.log1p(n)
    if n == 0:
        obs[13] = 0.5 if served_small is None else served_small
        return obs
    s = signals if signals is not None else _signals(ctx, cs, catalog)
    top = np.argsort(-s["base"], kind="stable")[:window]
    obs[5] = s["small"][top].mean()
    obs[6] = s["small"].mean()
    obs[7] = s["fresh"][top].mean()
    obs[8] = s["logpop"][top].mean()
    small = s["small"] > 0
    if small.any() and (~small).any():  # how far below the big creators' best the small ones score
        obs[9] = float(np.clip(np.sort(s["base"][~small])[::-1][:window].mean()
                               - np.sort(s["base"][small])[::-1][:window].mean(), -5, 5))
    _, counts = np.unique(s["cats"][top], return_counts=True)
    p = counts / counts.sum()
    obs[10] = float(-(p * np.log(p)).sum())
    obs[11] = s["interest"][top].mean()
    obs[13] = obs[5] if served_small is None else served_small
    impr, clk = catalog.exposure()
    it = cs.items[top]
    it = it[it < len(impr)]
    if len(it):  # the leaders' early CTR, each shrunk toward all notes' CTR
        i0, c0 = catalog.exposure_totals
        p0 = c0 / i0 if i0 > 0 else 0.0
        obs[14] = float(np.mean((clk[it] + _CTR_PRIOR * p0) / (impr[it] + _CTR_PRIOR)))
    return obs


def apply_knobs(ctx: UserContext, cs: CandidateSet, catalog: Catalog, knobs: np.ndarray,
                signals: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """New ``fused`` (z-scored fused score plus the knobs' weighted signals), the old one as
    ``fused.base``, and ``fused_rank``. ``knobs`` (len(KNOBS),) in KNOBS order; ``signals``:
    the request's (:func:`observation` computed them already)."""
    s = signals if signals is not None else _signals(ctx, cs, catalog)
    k = np.asarray(knobs, np.float64)
    fused = s["base"] + k[0] * s["small"] + k[1] * s["fresh"] + k[2] * s["novel"] + k[3] * s["interest"]
    rank = np.empty(len(cs), np.float32)
    rank[np.argsort(-fused, kind="stable")] = np.arange(len(cs))
    old = cs.columns.get("fused")
    out = {"fused": fused.astype(np.float32), "fused_rank": rank}
    if old is not None:
        out["fused.base"] = old
    return out


_ACTS = {"tanh": np.tanh, "relu": lambda x: np.maximum(x, 0.0)}


class KnobPolicy:
    """A small MLP from observation to knobs, evaluated with numpy (no training library).

    ``layers``: [(W (out, in), b (out,))], ``activation`` between them; ``head``: ``box``
    (the last layer's output is an action in [-1, 1]^d, clipped, or ``squash="tanh"``: passed
    through tanh, as SAC's actor does; then scaled to
    [``low``, ``high``] per knob, then clipped to [0, KNOB_HIGH]) or ``argmax`` (the last layer scores the rows of
    ``actions`` (m, len(KNOBS)), knob values; the best row is taken). Observations are
    normalised first: clip((obs - obs_mean) / sqrt(obs_var + eps), -obs_clip, obs_clip).

    ``observation``: the names of the inputs the policy was trained on, in order (default
    :data:`OBS_NAMES`). A policy trained before an observation was added names fewer; it is
    given the full observation (:data:`OBS_NAMES` order) and takes its own columns by name.
    """

    def __init__(self, layers: list[tuple[np.ndarray, np.ndarray]], activation: str, head: str,
                 obs_mean: np.ndarray, obs_var: np.ndarray, obs_clip: float = 10.0, eps: float = 1e-8,
                 low: np.ndarray | None = None, high: np.ndarray | None = None,
                 actions: np.ndarray | None = None, meta: dict[str, Any] | None = None,
                 squash: str = "clip", observation: tuple[str, ...] | list[str] | None = None) -> None:
        if activation not in _ACTS:
            raise ModelError(f"KnobPolicy: activation must be one of {sorted(_ACTS)}, got {activation!r}")
        if head not in ("box", "argmax"):
            raise ModelError(f"KnobPolicy: head must be 'box' or 'argmax', got {head!r}")
        if squash not in ("clip", "tanh"):
            raise ModelError(f"KnobPolicy: squash must be 'clip' or 'tanh', got {squash!r}")
        self.squash = squash
        self.obs_names = tuple(OBS_NAMES if observation is None else observation)
        unknown = [n for n in self.obs_names if n not in OBS_NAMES]
        if unknown or len(set(self.obs_names)) != len(self.obs_names):
            raise ModelError(f"KnobPolicy: observation names must be distinct names of this version's "
                             f"{list(OBS_NAMES)}; unknown or repeated: {unknown or list(self.obs_names)}")
        #: the policy's columns of the full observation (None: all of them, in order)
        self._cols = None if self.obs_names == OBS_NAMES else np.array([OBS_NAMES.index(n) for n in self.obs_names])
        self.layers = [(np.asarray(w, np.float32), np.asarray(b, np.float32)) for w, b in layers]
        self.activation, self.head = activation, head
        self.obs_mean = np.asarray(obs_mean, np.float32)
        self.obs_var = np.asarray(obs_var, np.float32)
        self.obs_clip, self.eps = float(obs_clip), float(eps)
        d = len(KNOBS)
        self.low = np.zeros(d, np.float32) if low is None else np.asarray(low, np.float32)
        self.high = np.full(d, KNOB_HIGH, np.float32) if high is None else np.asarray(high, np.float32)
        self.actions = None if actions is None else np.asarray(actions, np.float32)
        self.meta = dict(meta or {})
        self._check()

    def _check(self) -> None:
        n_in = len(self.obs_names)
        if not self.layers:
            raise ModelError("KnobPolicy: no layers")
        for i, (w, b) in enumerate(self.layers):
            if w.ndim != 2 or w.shape[1] != n_in or b.shape != (w.shape[0],):
                raise ModelError(f"KnobPolicy: layer {i} has shape {w.shape} / {b.shape}, expected (*, {n_in})")
            if not (np.isfinite(w).all() and np.isfinite(b).all()):
                raise ModelError(f"KnobPolicy: layer {i} has NaN or inf weights")
            n_in = w.shape[0]
        n_out = len(KNOBS) if self.head == "box" else (0 if self.actions is None else len(self.actions))
        if n_in != n_out:
            raise ModelError(f"KnobPolicy: the last layer gives {n_in} outputs, the {self.head} head needs {n_out}")
        if self.actions is not None and self.actions.shape[1:] != (len(KNOBS),):
            raise ModelError(f"KnobPolicy: actions must be (m, {len(KNOBS)}), got {self.actions.shape}")
        for name, v in (("obs_mean", self.obs_mean), ("obs_var", self.obs_var)):
            if v.shape != (len(self.obs_names),) or not np.isfinite(v).all():
                raise ModelError(f"KnobPolicy: {name} must be ({len(self.obs_names)},) finite values")

    def forward(self, obs: np.ndarray) -> np.ndarray:
        """(..., len(OBS_NAMES)) full observations -> the last layer's output."""
        obs = np.asarray(obs, np.float32)
        if self._cols is not None:
            obs = obs[..., self._cols]
        x = np.clip((obs - self.obs_mean) / np.sqrt(self.obs_var + self.eps),
                    -self.obs_clip, self.obs_clip)
        act = _ACTS[self.activation]
        for i, (w, b) in enumerate(self.layers):
            x = x @ w.T + b
            if i < len(self.layers) - 1:
                x = act(x)
        return x

    def act(self, obs: np.ndarray) -> np.ndarray:
        """(len(KNOBS),) knob values for one observation."""
        out = self.forward(obs)
        if self.head == "argmax":
            assert self.actions is not None
            return self.actions[int(np.argmax(out))].copy()
        return _box(out, self.low, self.high, self.squash)

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path) -> Path:
        """``path/policy.safetensors`` (layer weights, observation statistics, action table)
        and ``path/policy.json`` (architecture, names, scaling, ``meta``)."""
        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        tensors = {"obs_mean": self.obs_mean, "obs_var": self.obs_var, "low": self.low, "high": self.high}
        for i, (w, b) in enumerate(self.layers):
            tensors[f"layers.{i}.weight"], tensors[f"layers.{i}.bias"] = w, b
        if self.actions is not None:
            tensors["actions"] = self.actions
        save_file({k: np.ascontiguousarray(v, np.float32) for k, v in tensors.items()}, str(p / "policy.safetensors"))
        spec = {"kind": "policy/rl", "format": 1, "head": self.head, "activation": self.activation,
                "layers": [list(w.shape) for w, _ in self.layers], "observation": list(self.obs_names),
                "knobs": list(KNOBS), "obs_clip": self.obs_clip, "eps": self.eps,
                "normalisation": "clip((obs - obs_mean) / sqrt(obs_var + eps), -obs_clip, obs_clip)",
                "squash": self.squash,
                "action_scaling": (f"knobs = clip(low + ({'tanh(out)' if self.squash == 'tanh' else 'clip(out, -1, 1)'}"
                                   " + 1) / 2 * (high - low), 0, 2)" if self.head == "box"
                                   else "knobs = actions[argmax(out)]"),
                "low": self.low.tolist(), "high": self.high.tolist(),
                "actions": None if self.actions is None else self.actions.tolist(), "meta": self.meta}
        (p / "policy.json").write_text(json.dumps(spec, indent=2) + "\n")
        return p

    @classmethod
    def load(cls, path: str | Path) -> KnobPolicy:
        """Read a directory written by :meth:`save`; :class:`ModelError` says what is wrong."""
        p = Path(path)
        try:
            spec = json.loads((p / "policy.json").read_text())
            t = load_file(str(p / "policy.safetensors"))
        except FileNotFoundError as e:
            raise ModelError(f"{p}: not a policy directory ({Path(e.filename or '').name} missing)") from None
        except Exception as e:  # corrupt JSON or safetensors raise several types
            raise ModelError(f"{p}: cannot read the policy ({type(e).__name__}: {e})") from None
        if spec.get("kind") != "policy/rl":
            raise ModelError(f"{p}/policy.json: kind must be 'policy/rl', got {spec.get('kind')!r}")
        names = spec.get("observation")
        if list(spec.get("knobs", [])) != list(KNOBS) or not isinstance(names, list) or not names \
                or any(n not in OBS_NAMES for n in names):
            raise ModelError(f"{p}/policy.json: observation or knobs differ from this version's "
                             f"(observation names among {list(OBS_NAMES)}, knobs {list(KNOBS)})")
        n = len(spec.get("layers", []))
        try:
            layers = [(t[f"layers.{i}.weight"], t[f"layers.{i}.bias"]) for i in range(n)]
            return cls(layers, spec["activation"], spec["head"], t["obs_mean"], t["obs_var"],
                       spec.get("obs_clip", 10.0), spec.get("eps", 1e-8), t["low"], t["high"], t.get("actions"),
                       spec.get("meta"), spec.get("squash", "clip"), names)
        except KeyError as e:
            raise ModelError(f"{p}: missing {e} in the policy files") from None


def _box(out: np.ndarray, low: np.ndarray, high: np.ndarray, squash: str) -> np.ndarray:
    """A box head's knobs from its last layer's output (..., len(KNOBS)): the action in [-1, 1]
    (``squash`` ``clip`` or ``tanh``) scaled to [``low``, ``high``], clipped to [0, KNOB_HIGH]."""
    a = np.tanh(out) if squash == "tanh" else np.clip(out, -1.0, 1.0)
    return np.clip(low + (a + 1.0) / 2.0 * (high - low), 0.0, KNOB_HIGH)


_ENSEMBLE = "ensemble.json"
_MEMBER = re.compile(r"member_[0-9]+")


class KnobEnsemble:
    """Several learned policies served as one: a request's knobs are the mean of the members'
    knobs (each member's own scaling and clipping first).

    Meant for policies of one recipe trained with other seeds, which disagree on which
    communities they help: their mean keeps the per-request adaptation they share and
    averages the rest (whether it beats its members is measured, not assumed: see docs/online.md,
    "Exposure control learned in the simulator"). Saved as
    ``ensemble.json`` (kind ``policy/rl-ensemble``, the member folders, ``meta``) and one
    :meth:`KnobPolicy.save` folder per member (``member_0``, ...); members are plain policies."""

    kind = "policy/rl-ensemble"

    def __init__(self, members: list[KnobPolicy], meta: dict[str, Any] | None = None) -> None:
        if not members:
            raise ModelError("KnobEnsemble: no members")
        if not all(isinstance(m, KnobPolicy) for m in members):
            raise ModelError("KnobEnsemble: every member must be a KnobPolicy (no nested ensembles)")
        self.members = list(members)
        self.meta = dict(meta or {})
        comms = sorted({int(c) for m in self.members for c in (m.meta.get("communities") or [])})
        self.meta.setdefault("communities", comms)  # what --policy-mean reads: where the members trained
        self.meta.setdefault("algo", "ensemble(" + ",".join(str(m.meta.get("algo", "?")) for m in self.members) + ")")
        self._stack = self._stacked()

    def _stacked(self) -> dict[str, Any] | None:
        """The members' arrays stacked along a first axis when they are all box-head policies of
        one architecture (what ``notefeed rl ensemble`` of one recipe gives): one batched
        product per layer instead of one per member and layer. None: act member by member."""
        ms = self.members
        first = ms[0]

        def same(m: KnobPolicy) -> bool:
            return (m.head == "box" and (m.activation, m.squash, m.obs_clip, m.eps, m.obs_names)
                    == (first.activation, first.squash, first.obs_clip, first.eps, first.obs_names)
                    and [w.shape for w, _ in m.layers] == [w.shape for w, _ in first.layers])

        if not all(same(m) for m in ms):
            return None
        return {"mean": np.stack([m.obs_mean for m in ms])[:, None, :],
                "sd": np.stack([np.sqrt(m.obs_var + m.eps) for m in ms])[:, None, :],
                "w": [np.stack([m.layers[i][0].T for m in ms]) for i in range(len(first.layers))],
                "b": [np.stack([m.layers[i][1] for m in ms])[:, None, :] for i in range(len(first.layers))],
                "low": np.stack([m.low for m in ms]), "high": np.stack([m.high for m in ms]),
                "act": _ACTS[first.activation], "clip": first.obs_clip, "squash": first.squash,
                "cols": first._cols}

    def act(self, obs: np.ndarray) -> np.ndarray:
        """(len(KNOBS),) the mean of the members' knobs for one observation."""
        st = self._stack
        if st is None:
            out = np.mean([m.act(obs) for m in self.members], axis=0)
        else:  # each member's KnobPolicy.act, batched over members
            o = np.asarray(obs, np.float32)
            o = o if st["cols"] is None else o[st["cols"]]
            x = np.clip((o[None, None, :] - st["mean"]) / st["sd"], -st["clip"], st["clip"])
            n = len(st["w"])
            for i in range(n):
                x = x @ st["w"][i] + st["b"][i]
                if i < n - 1:
                    x = st["act"](x)
            out = _box(x[:, 0, :], st["low"], st["high"], st["squash"]).mean(axis=0)
        return np.clip(out, 0.0, KNOB_HIGH).astype(np.float32)

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        names = [f"member_{i}" for i in range(len(self.members))]
        for name, m in zip(names, self.members, strict=True):
            m.save(p / name)
        spec = {"kind": self.kind, "format": 1, "combine": "mean of the members' knobs", "members": names,
                "meta": self.meta}
        (p / _ENSEMBLE).write_text(json.dumps(spec, indent=2) + "\n")
        return p

    @classmethod
    def load(cls, path: str | Path) -> KnobEnsemble:
        """Read a directory written by :meth:`save`; :class:`ModelError` says what is wrong."""
        p = Path(path)
        try:
            spec = json.loads((p / _ENSEMBLE).read_text())
        except FileNotFoundError:
            raise ModelError(f"{p}: not a policy ensemble directory ({_ENSEMBLE} missing)") from None
        except (OSError, ValueError) as e:
            raise ModelError(f"{p}/{_ENSEMBLE}: cannot read it ({type(e).__name__}: {e})") from None
        if not isinstance(spec, dict) or spec.get("kind") != cls.kind:
            got = spec.get("kind") if isinstance(spec, dict) else spec
            raise ModelError(f"{p}/{_ENSEMBLE}: kind must be {cls.kind!r}, got {got!r}")
        names = spec.get("members")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and _MEMBER.fullmatch(n)
                                                                for n in names):
            raise ModelError(f"{p}/{_ENSEMBLE}: members must be a non-empty list of member_<i> folder names, "
                             f"got {names!r}")
        meta = spec.get("meta")
        return cls([KnobPolicy.load(p / n) for n in names], meta if isinstance(meta, dict) else None)


def load_policy(path: str | Path) -> KnobPolicy | KnobEnsemble:
    """The learned policy in ``path``: an ensemble when it holds ``ensemble.json``, else one
    :class:`KnobPolicy`."""
    p = Path(path)
    return KnobEnsemble.load(p) if (p / _ENSEMBLE).exists() else KnobPolicy.load(p)


EXPOSURE_STEPS: Registry[ExposureStep] = Registry("exposure step")


class ExposureStep:
    """The pipeline scorer that sets the exposure knobs of each request (module docstring).

    ``controller`` (obs -> knobs) decides; without one, or when it fails or answers out of
    range, the configured ``fixed`` knobs apply (``fallbacks`` counts those requests).
    ``last`` holds the latest request's observation, knobs and where they came from;
    ``decide_ms`` the latest decision times (observation + forward pass), for p99.
    ``served_small``: the small-creator share of the top of the step's output order, an
    exponential average over about 50 requests (the observation's ``small_share_served``:
    how much of the exposure target the recent pages already met)."""

    def __init__(self, catalog: Catalog, fixed: np.ndarray, name: str = "policy/fixed",
                 controller: Any = None, window: int = 20) -> None:
        self.catalog, self.name, self.window = catalog, name, window
        self.fixed = np.asarray(fixed, np.float64)
        self.controller = controller
        #: why the learned policy could not be loaded (its requests count as fallbacks)
        self.load_error: str | None = None
        self.requests = self.fallbacks = 0
        self.served_small: float | None = None
        #: sum of the knobs applied (their mean over requests: knob_sum / requests)
        self.knob_sum = np.zeros(len(KNOBS))
        self.last: dict[str, Any] = {}
        self.decide_ms: deque[float] = deque(maxlen=10_000)
        #: the whole step per request (signals, decision, re-weighting)
        self.step_ms: deque[float] = deque(maxlen=10_000)
        self._lock = threading.Lock()  # concurrent requests update the counters and averages

    def observation(self, ctx: UserContext, cs: CandidateSet,
                    signals: dict[str, np.ndarray] | None = None) -> np.ndarray:
        return observation(ctx, cs, self.catalog, self.window, signals, self.served_small)

    def decide(self, ctx: UserContext, cs: CandidateSet,
               signals: dict[str, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray, str]:
        """(observation, knobs, source): source is ``policy``, ``fixed`` or ``fallback: why``."""
        t0 = time.perf_counter()
        obs = self.observation(ctx, cs, signals)
        source = "fixed" if self.load_error is None else f"fallback: {self.load_error}"
        knobs = self.fixed
        if self.controller is not None:
            if obs.shape != (len(OBS_NAMES),) or not np.isfinite(obs).all():
                source = "fallback: observation not finite"
            else:
                try:
                    k = np.asarray(self.controller(obs), np.float64)
                    if k.shape != (len(KNOBS),) or not np.isfinite(k).all():
                        source = f"fallback: policy answered {k.shape} / non-finite knobs"
                    else:
                        knobs, source = np.clip(k, 0.0, KNOB_HIGH), "policy"
                except Exception as e:  # a broken policy must not break the feed
                    source = f"fallback: {type(e).__name__}: {e}"
        with self._lock:
            self.decide_ms.append((time.perf_counter() - t0) * 1e3)
            self.requests += 1
            self.knob_sum += knobs
            self.fallbacks += source.startswith("fallback")
            self.last = {"observation": obs, "knobs": knobs, "source": source}
        return obs, knobs, source

    def score(self, ctx: UserContext, cs: CandidateSet) -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        signals = _signals(ctx, cs, self.catalog) if len(cs) else None
        _, knobs, _ = self.decide(ctx, cs, signals)
        # knobs at zero: the fused order stands
        out = apply_knobs(ctx, cs, self.catalog, knobs, signals) if np.any(knobs) else {}
        if signals is not None:
            order = np.argsort(-(out["fused"] if out else signals["base"]), kind="stable")[:_PAGE]
            share = float(signals["small"][order].mean())
            a = 1.0 / _SERVED_MEMORY
            with self._lock:
                prev = self.served_small
                self.served_small = share if prev is None else (1 - a) * prev + a * share
        self.step_ms.append((time.perf_counter() - t0) * 1e3)
        return out


def _fixed(cfg: ExposureConfig) -> np.ndarray:
    return np.array([float(cfg.knobs.get(k, 0.0)) for k in KNOBS], np.float64)


@EXPOSURE_STEPS.register("policy/fixed")
def _fixed_step(catalog: Catalog, config: ExposureConfig) -> ExposureStep:
    """The configured knobs on every request."""
    return ExposureStep(catalog, _fixed(config), "policy/fixed", window=config.window)


@EXPOSURE_STEPS.register("policy/rl")
def _rl_step(catalog: Catalog, config: ExposureConfig) -> ExposureStep:
    """A learned policy from ``model_dir`` (the configured knobs when it is absent or bad)."""
    step = ExposureStep(catalog, _fixed(config), "policy/rl", window=config.window)
    if config.model_dir:
        try:
            step.controller = load_policy(config.model_dir).act
        except ModelError as e:  # serve with the fixed knobs and say why
            step.load_error = str(e)
    return step


def make_exposure_step(catalog: Catalog, config: ExposureConfig) -> ExposureStep | None:
    """The configured exposure step, or None when ``config.name`` is None."""
    if config.name is None:
        return None
    return EXPOSURE_STEPS.create(config.name, catalog=catalog, config=config)
