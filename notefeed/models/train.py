"""Training orchestration: fit every component a serving config names, as serving will use it.

:func:`train_components` is what ``notefeed train`` runs and what ``notefeed eval --stage
feed`` runs on a training split, so the evaluated system is the served one.

1. Recall channels are fitted on the log minus each user's last new positive item (the
   *ranker targets*; users with fewer than two positive items keep everything; a small log
   holds out the last few, so that the rankers get about 3,000 training points): a target
   is then what a served user's next item is, an item the channel models never saw for that
   user. Each held-out point is captured on the log as it was just before it (an engine per
   hold-out depth, all with the same fitted channels). Serving then uses the channels that
   train in seconds (item-to-item tables, ALS, user-to-user, tags) fitted again on the whole
   log, with the user's latest notes in them, and the ones that take minutes
   (``offline_only``: the sequence model) as fitted on the held-out log (``refit``).
2. When the config names the learned ranker (``rank/ltr``) for the coarse and/or fine stage,
   an :class:`~notefeed.serve.engine.Engine` over that log (clock just after its end) runs the
   configured pipeline for a sample of target users up to the coarse scorer, capturing the
   merged, filtered candidate sets: hard negatives from our own recall. The coarse ranker is
   trained on them with the cheap features (channel ranks, item/user statistics); the
   configured coarse keep then cuts each set, the ``features/channels`` step scores the kept
   candidates with every channel that can (Swing/ItemCF similarity, sequence-model logit),
   and the fine ranker is trained on those. Both with a time-ordered validation split and
   early stopping; their metrics go into the report (and the model manifest).
3. On a log with impressions and request ids (the simulator's, a served log), each held-out
   point also brings the page on which the user first engaged with its target: the notes
   shown there and passed over count as unseen for the capture (as they were when that page
   was served) and are the real negatives of the rankers' impression term
   (``rank/ltr``'s ``impression_weight``; 0 leaves the log's pages unused).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from notefeed.data.dataset import Dataset
from notefeed.eval.splits import has_seen_target, leave_last_out, seen_items
from notefeed.threads import default_workers, forked_imap, one_thread

__all__ = ["train_components", "train_workspace", "TrainError", "COARSE_PREFIXES"]

#: channels whose batch work a batch engine (``--engine ray``) runs
ENGINE_CHANNELS = ("item-to-item/swing", "item-to-item/itemcf", "sequence/sasrec")

#: what ``train_components(refit=...)`` accepts (see there)
REFIT = ("all", "serve", "none")

#: feature families the coarse ranker may use (cheap: no per-candidate model calls)
COARSE_PREFIXES = ("base.", "user.", "recall.")

#: users whose candidate sets train the rankers, at most (a sample when the log has more)
MAX_RANK_USERS = 8000


def _channel_components(pipeline: Any, config: Any) -> dict[str, Any]:
    """The fitted registry channels of ``pipeline``, keyed ``recall.channels.<i>``."""
    out: dict[str, Any] = {}
    sources = [s for s in pipeline.steps if s.kind == "source"]
    for i, ch in enumerate(config.recall.channels):
        if ch.name in ("fresh/recent", "non-personalized/popular"):
            continue
        out[f"recall.channels.{i}"] = sources[i].component
    return out


class TrainError(ValueError):
    """An expected failure of :func:`train_workspace`, naming what caused it (``where``: the
    command-line flag, ``--workspace`` or ``--config``)."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where, self.message = where, message


def train_workspace(workspace: str | Path, config: Any = None, seed: int = 0, progress: bool = True,
                    promote: bool = True, ds: Dataset | None = None,
                    log: Callable[[str], None] | None = None, max_rank_users: int = MAX_RANK_USERS,
                    batch_engine: Any = None, sync: bool = True) -> str:
    """What ``notefeed train`` does: fit ``config``'s components (default config when
    ``None``) on the workspace's data (or ``ds``, which must be that data), store a new
    version in ``WORKSPACE/models/``, promote it unless ``promote`` is off; return the version.

    ``log`` receives one line per phase (the progress bars are tqdm's, on a terminal);
    ``max_rank_users``: users whose candidate sets train the rankers (a sample when more).
    ``batch_engine``: a :mod:`notefeed.batch` engine that fits the item-to-item channels
    (same tables as without it). ``sync``: first copy into the store what serving logged
    since the last sync (:mod:`notefeed.models.sync`: events and published notes; not with
    ``ds`` given). Expected failures raise :class:`TrainError`.
    """
    from notefeed.data.dataset import DataError
    from notefeed.models.artifacts import ModelError
    from notefeed.models.store import ModelStore, data_snapshot
    from notefeed.serve.cli import load_workspace_dataset
    from notefeed.serve.config import ConfigError, ServeConfig

    workspace = Path(workspace)
    cfg = config if config is not None else ServeConfig()
    say = log or (lambda _msg: None)
    if ds is None:
        try:
            if sync:
                from notefeed.models.sync import sync_workspace

                report = sync_workspace(workspace, cfg)
                if report.copied:
                    say(report.line())
            ds = load_workspace_dataset(workspace, data=cfg.data)  # DuckDB reads only the data window
        except (DataError, OSError) as e:
            raise TrainError("--workspace", str(e)) from None
        except ValueError as e:  # the serving logs (an unreadable event or note log, a bad backend)
            raise TrainError("--workspace", f"syncing the serving logs into the store failed ({e})") from None
    else:  # a given dataset (e.g. the event lake's): the same window
        ds = ds.windowed(cfg.data.window_days, cfg.data.keep_per_user)
    if not len(ds.events):
        raise TrainError("--workspace", f"{workspace} has no events to train on (import or generate data, or "
                         "serve it and post events first)")
    say(f"training on {workspace}: {ds.n_users:,} users, {ds.n_items:,} notes, {len(ds.events):,} events")
    t0 = time.perf_counter()
    try:
        components, report = train_components(cfg, ds, progress=progress, seed=seed,
                                              max_rank_users=max_rank_users, log=say, batch_engine=batch_engine,
                                              workers=default_workers())
    except (ValueError, ConfigError) as e:
        raise TrainError("--config", str(e)) from None
    # per-model metrics (the rankers'); the channel names and fit times stay in train_report
    metrics = {k: v for k, v in report.items() if isinstance(v, dict) and k not in ("channels", "channel_fit_s")}
    store = ModelStore(workspace)
    try:
        version = store.save(components, {"config": cfg.model_dump(mode="json"), "data": data_snapshot(ds),
                                          "metrics": metrics, "train_report": report},
                             user_ids=ds.users["user_id"].astype(str).tolist())
        if promote:
            store.promote(version)
    except ModelError as e:
        raise TrainError("--workspace", str(e)) from None
    say(f"stored version {version} ({len(components)} components, {time.perf_counter() - t0:.1f} s)"
        + (", promoted" if promote else " (not promoted: `notefeed models promote`)"))
    return version


def train_components(config: Any, ds: Dataset, progress: bool = True, seed: int = 0,
                     max_rank_users: int = MAX_RANK_USERS, log: Callable[[str], None] | None = None,
                     target_groups: int = 3000, max_holdouts: int = 5, batch_engine: Any = None,
                     refit: str = "serve", workers: int = 1) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit ``config``'s components on ``ds``; ``(components by config place, report)``.
    ``log`` receives one line per phase. The rankers learn from about ``target_groups``
    (user, next note) points: a small log holds out up to ``max_holdouts`` last notes per
    user (the channels never see them), a large one just the last. ``batch_engine``: fit the
    Swing/ItemCF channels and the sequence model's training sequences on it (:mod:`notefeed.batch`)
    instead of in this process.
    ``refit``: which logs the channels that train in seconds (all but the ``offline_only``
    ones, e.g. ``sequence/sasrec``) are fitted on. ``"serve"`` (the default, measured best:
    docs/feed.md "Feed quality"): captures on the deepest hold-out's fits, the served ones on the
    whole log; ``"all"``: also each hold-out depth's capture on that depth's log (every
    candidate feature then comes from channels that saw everything before its target);
    ``"none"``: the deepest hold-out's fits everywhere. Offline-only channels are always
    trained once, on the deepest hold-out's log. ``workers``: forked processes that run the
    pipeline for the rankers' samples (the same samples; ``notefeed train`` and the feed
    evaluation use every core, at most 4).
    On a log with impressions and request ids, the rankers also learn from the page each
    target was chosen on (:func:`_page_negatives`), unless their ``impression_weight`` is 0."""
    from notefeed.serve.engine import Engine
    from notefeed.serve.factory import LEARNED

    if refit not in REFIT:
        raise ValueError(f"refit: {refit!r}; one of {list(REFIT)}")
    report: dict[str, Any] = {}
    learned = [s for s, name in (("coarse", config.coarse.scorer), ("fine", config.fine.scorer)) if name == LEARNED]
    for stage in learned:  # a bad ranker setting fails now, not after minutes of channel fitting
        ranker_config(config, stage, seed)
    t0, c0 = time.perf_counter(), time.process_time()  # wall and this process's CPU seconds
    say = log or (lambda _msg: None)
    holds = _holdouts(ds, target_groups, max_holdouts) if learned and len(ds.events) else []
    use_pages = bool(holds) and _uses_pages(config, learned) and _has_pages(ds)
    to_fit = [c.name for c in config.recall.channels if c.name not in ("fresh/recent", "non-personalized/popular")]
    say("fitting recall channels: " + ", ".join(to_fit) if to_fit else "no recall channels to fit (built-ins only)")
    capture_cfg = config.offline().with_overrides(coarse={"scorer": None}, fine={"scorer": None, "model_dir": None},
                                                  rerank={"name": None}, coldstart={"enabled": False})
    groups: list[tuple[Any, ...]] = []  # _capture's tuples + the channels that captured them
    components: dict[str, Any] = {}
    prefit = (_fit_on_engine(config, holds[-1].train if holds else ds, batch_engine, progress)
              if batch_engine is not None else {})
    # targets the channels never saw (no positive in their fitting log) are left out: offline
    # the catalogue holds only notes that occur in the log, so a note with no positive left is
    # always someone's held-out target, and a ranker taught on them learns to find notes by
    # their empty history (on the Taobao head, 81% of test targets have none)
    known = seen_items(holds[-1].train) if holds else None
    # the earliest held-out target first: its engine is the one on the fitting log
    for j in range(len(holds) - 1, -1, -1) if holds else [0]:
        with tempfile.TemporaryDirectory(prefix="notefeed-train-") as tmp:
            log_j = holds[j].train if holds else ds
            # after the deepest depth: the offline-only channels as trained there, the others
            # refitted on this depth's log by the engine (refit "all") or reused as they are
            reuse = ({k: v for k, v in components.items() if refit != "all" or _offline_only(v)}
                     if components else prefit)
            engine = Engine(log_j, capture_cfg, Path(tmp), fit_offline=True, fitted=reuse or None)
            try:
                if not components:
                    components = _channel_components(engine.pipelines["default"], config)
                    report["channels_fit_s"] = time.perf_counter() - t0
                    report["channels_cpu_s"] = time.process_time() - c0
                    report["channel_fit_s"] = dict(engine.pipelines["default"].fit_seconds)
                    report["channels"] = {k: getattr(v, "name", type(v).__name__) for k, v in components.items()}
                    say(f"recall channels fitted ({report['channels_fit_s']:.1f} s: " + ", ".join(
                        f"{k.split(':', 1)[-1]} {v:.1f} s" for k, v in report["channel_fit_s"].items()) + ")")
                    if not holds:
                        return components, report
                    report["rank_holdouts"] = len(holds)
                    say(f"ranker training samples: our own recall's candidates for up to {max_rank_users:,} "
                        f"(user, next note) points, the last {len(holds)} new note(s) of each user")
                engine.at_end_of_log()  # offline = online: clock after the log, its last hour warmed
                parent = holds[j - 1].train if j else ds  # the log that still holds the targets
                pages = _page_negatives(parent, holds[j]) if use_pages else {}
                with one_thread():  # request-sized work: see notefeed.threads
                    got = _capture(engine, log_j, holds[j], max(1, max_rank_users // len(holds)),
                                   seed + j, progress, pages, known, workers)
                # the fine stage's channel features come from the channels this capture used
                chans = _channel_components(engine.pipelines["default"], config)
                groups += [(*g, chans) for g in got[0]]
                report["rank_targets_unseen"] = report.get("rank_targets_unseen", 0) + got[1]
            finally:
                engine.close()
    report["channel_refit"] = refit
    if refit != "none":  # the served channels: fitted on the whole log
        t_re, c_re = time.perf_counter(), time.process_time()
        components.update(_refit_channels(config, ds, components, batch_engine, progress))
        report["channels_refit_s"] = time.perf_counter() - t_re
        report["channels_refit_cpu_s"] = time.process_time() - c_re
        say(f"channels refitted on the whole log for serving ({report['channels_refit_s']:.1f} s)")
    report["rank_samples_s"] = time.perf_counter() - t0 - report.get("channels_fit_s", 0.0)
    report["rank_samples_cpu_s"] = time.process_time() - c0 - report.get("channels_cpu_s", 0.0)
    report["rank_users"] = len(groups)
    report["rank_target_recalled"] = float(np.mean([g[2] >= 0 for g in groups])) if groups else 0.0
    report["rank_impression_pages"] = int(sum(len(g[5]) > 0 for g in groups if g[2] >= 0))
    say(f"training the {' and '.join(learned)} ranker{'s' if len(learned) > 1 else ''} (rank/ltr) "
        f"on {len(groups):,} candidate sets")
    t_rank, c_rank = time.perf_counter(), time.process_time()
    _train_rankers(config, groups, learned, components, report, progress, seed)
    report["rankers_fit_s"] = time.perf_counter() - t_rank
    report["rankers_cpu_s"] = time.process_time() - c_rank
    report["fit_s"] = time.perf_counter() - t0
    report["fit_cpu_s"] = time.process_time() - c0
    say(f"rankers trained ({report['rankers_fit_s']:.1f} s; their samples took {report['rank_samples_s']:.1f} s; "
        f"CPU seconds: channels {report['channels_cpu_s']:.0f}, samples {report['rank_samples_cpu_s']:.0f}, "
        f"rankers {report['rankers_cpu_s']:.0f})")
    for stage, served_instead in (("coarse", "the builtin/popularity formula"), ("fine", "the coarse order")):
        line = gate_line(stage, report.get(stage), served_instead)
        if line is not None:
            say(line)
    warning = coarse_data_warning(report)
    if warning is not None:
        report.setdefault("warnings", []).append(warning)
        say(f"warning: {warning}")
    return components, report


def ranker_config(config: Any, stage: str, seed: int) -> Any:
    """The :class:`~notefeed.rank.ltr.LTRConfig` that trains ``stage``'s ranker (``coarse`` or
    ``fine``) from ``<stage>.params``; the coarse one gated against :func:`coarse_gate` and
    bagged (``bag``) unless its params say otherwise. A bad setting raises ``ValueError`` naming ``<stage>.params.<key>``."""
    from notefeed.rank.ltr import LTRConfig

    params = dict(getattr(config, stage).params or {})
    # the coarse ranker: gated, and bagged where the gate passes (docs/feed.md "Feed quality", round 27)
    defaults = {"gate": coarse_gate(), "bag": True} if stage == "coarse" else {}
    known = {f.name for f in dataclasses.fields(LTRConfig)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"{stage}.params.{unknown[0]}: not a rank/ltr setting; known: {sorted(known)}")
    for key in ("gate", "residual"):
        v = params.get(key)
        ok = v is None or (isinstance(v, str) and v) or (
            isinstance(v, dict) and v and all(isinstance(k, str) and isinstance(w, int | float) and not isinstance(w, bool)
                                              for k, w in v.items()))
        if not ok:
            raise ValueError(f"{stage}.params.{key}: a feature name or {{feature: number}}, not {v!r}")
    if "bag" in params and not isinstance(params["bag"], bool):
        raise ValueError(f"{stage}.params.bag: true or false, not {params['bag']!r}")
    return LTRConfig(**{"seed": seed, **defaults, **params})


def coarse_gate() -> dict[str, float]:
    """The coarse ranker's gate (:class:`~notefeed.rank.ltr.LTRConfig` ``gate``): the
    ``builtin/popularity`` formula over the ``base.*`` features it is computed from."""
    from notefeed.serve.components import POPULARITY_WEIGHTS

    return {f"base.{name}": w for name, w in POPULARITY_WEIGHTS.items()}


def gate_line(stage: str, metrics: Any, served_instead: str) -> str | None:
    """One line on a ranker's gate decision (None when the ranker was not gated)."""
    if not isinstance(metrics, dict) or "gate_passed" not in metrics:
        return None
    verdict = "kept" if metrics["gate_passed"] else f"not kept, the stage serves {served_instead}"
    return (f"{stage} ranker {verdict}: out-of-fold HR@10 {metrics['gate_oof_hr10']:.3f} against "
            f"{metrics['gate_oof_base_hr10']:.3f} over {int(metrics['gate_groups']):,} candidate sets "
            f"(z {metrics['gate_z']:.2f})")


#: below this many validation candidate sets the coarse ranker's HR@10 there has a standard
#: error of about 0.05 or more, too coarse to see that it learned anything
COARSE_MIN_VALID_GROUPS = 100


def coarse_data_warning(report: dict[str, Any]) -> str | None:
    """A warning when an *ungated* coarse ranker (``coarse.params: {gate: null}``) was
    validated on too few candidate sets.

    The gate (the default, :func:`coarse_gate`) serves the ``builtin/popularity`` formula
    instead of a ranker that does not beat it out of fold. Without it, the coarse ranker is
    served however little it learned: trained on the candidate sets of 500 users of the
    ``demo`` community (26 validation sets, HR@10 0.000 there), it made the served page's
    closed-loop CTR 0.044 against random's 0.054 (docs/results/demo/)."""
    m = report.get("coarse")
    if not isinstance(m, dict) or "valid_groups" not in m or "gate_passed" in m:
        return None
    n = int(m["valid_groups"])
    if n >= COARSE_MIN_VALID_GROUPS:
        return None
    hr = m.get("valid_hr10_in_candidates")
    shown = f", HR@10 {hr:.3f} there" if isinstance(hr, float) else ""
    return (f"the coarse ranker was validated on {n} candidate sets{shown} (fewer than "
            f"{COARSE_MIN_VALID_GROUPS}) and is served ungated; trained on this little data it "
            f"can rank worse than random: train on more users' histories, or keep the gate on")


def _offline_only(component: Any) -> bool:
    """Whether ``component`` takes minutes to train (its class's ``offline_only``)."""
    return bool(getattr(type(component), "offline_only", False))


def _fit_channel(config: Any, i: int, ds: Dataset, engine: Any, progress: bool) -> Any:
    """Channel ``i`` of ``config`` created anew and fitted on ``ds``; its batch work (Swing /
    ItemCF tables, the sequence model's training sequences) on ``engine`` when given."""
    from notefeed.recall.base import CHANNELS
    from notefeed.serve.factory import _fit, create_component

    ch = config.recall.channels[i]
    comp = create_component(CHANNELS.get(ch.name), ch.params, f"recall.channels.{i}.params")
    on_engine = engine is not None and ch.name in ENGINE_CHANNELS
    if on_engine:
        comp.engine, comp.progress = engine, progress or comp.progress
    try:
        return _fit(comp, ds)
    finally:
        if on_engine:
            comp.engine = None  # incremental updates at serving time run in-process


def _refit_channels(config: Any, ds: Dataset, components: dict[str, Any], batch_engine: Any,
                    progress: bool) -> dict[str, Any]:
    """``components``' channels that are not offline-only, fitted anew on ``ds`` (the
    item-to-item tables on ``batch_engine`` when given), by config place."""
    return {f"recall.channels.{i}": _fit_channel(config, i, ds, batch_engine, progress)
            for i in range(len(config.recall.channels))
            if f"recall.channels.{i}" in components and not _offline_only(components[f"recall.channels.{i}"])}


def _fit_on_engine(config: Any, ds: Dataset, engine: Any, progress: bool) -> dict[str, Any]:
    """The config's channels that have batch work fitted on ``ds`` with ``engine`` (Swing /
    ItemCF tables; the sequence model's training sequences, its training itself here), by
    config place."""
    from notefeed.serve.factory import load_stage_components

    load_stage_components()
    return {f"recall.channels.{i}": _fit_channel(config, i, ds, engine, progress)
            for i, ch in enumerate(config.recall.channels) if ch.name in ENGINE_CHANNELS}


def _holdouts(ds: Dataset, target_groups: int, max_holdouts: int) -> list[Any]:
    """Successive leave-last-out splits: ``[0]`` holds out each user's last new positive,
    ``[1]`` the one before (on ``[0].train``), ... as many as it takes for about
    ``target_groups`` training points (small logs: up to ``max_holdouts``; large: one). The
    channels are fitted on the last one's training log; fewer than 20 users: none."""
    first = leave_last_out(ds)
    if len(first.test_users) < 20:
        return []
    k = int(min(max_holdouts, max(1, np.ceil(target_groups / len(first.test_users)))))
    out = [first]
    while len(out) < k:
        nxt = leave_last_out(out[-1].train)
        if len(nxt.test_users) < 20:
            break
        out.append(nxt)
    return out


def _uses_pages(config: Any, learned: list[str]) -> bool:
    """Whether a learned ranker of ``config`` trains on impression pages (its
    ``impression_weight``, :class:`~notefeed.rank.ltr.LTRConfig`, is not 0)."""
    from notefeed.rank.ltr import LTRConfig

    default = LTRConfig.impression_weight
    return any(float((getattr(config, st).params or {}).get("impression_weight", default)) > 0 for st in learned)


def _has_pages(ds: Dataset) -> bool:
    """Whether ``ds`` logs impressions with request ids (the simulator's log, a served log)."""
    ev = ds.events
    return "request_id" in ev and bool((ev["type"] == "impression").any()) and bool(ev["request_id"].notna().any())


def _page_negatives(parent: Dataset, hold: Any) -> dict[int, np.ndarray]:
    """``{user: notes shown on the target's page and not engaged with}`` for ``hold``'s test
    users, from ``parent`` (the log that still holds each target): the request on which the
    user first engaged with the target, its impressions minus the notes engaged with on it.

    These are the log's real negatives at the moment the target was chosen: the notes the
    user saw beside it and passed over. Users without such a page are left out."""
    from notefeed.online.ltr import ENGAGED_TYPES

    ev = parent.events
    tgt = hold.test_items
    users = np.repeat(hold.test_users, np.diff(tgt.indptr))
    pairs = pd.DataFrame({"user": users.astype(np.int64), "item": tgt.indices.astype(np.int64)})
    engaged = ev[ev["type"].isin(list(ENGAGED_TYPES)) & ev["request_id"].notna()]
    first = engaged[["user", "item", "request_id"]].astype({"user": np.int64, "item": np.int64}).merge(
        pairs, on=["user", "item"]).drop_duplicates("user", keep="first")  # ev is in time order
    if first.empty:
        return {}
    on_page = ev[ev["request_id"].isin(first["request_id"].unique())]
    shown = on_page[on_page["type"] == "impression"]
    liked = on_page[on_page["type"].isin(list(ENGAGED_TYPES))]
    done = set(zip(liked["request_id"].to_numpy(), liked["item"].to_numpy().tolist(), strict=True))
    by_req: dict[str, list[int]] = {}
    for req, item in zip(shown["request_id"].to_numpy(), shown["item"].to_numpy().tolist(), strict=True):
        if (req, item) not in done:
            by_req.setdefault(req, []).append(item)
    out = {}
    for u, req in zip(first["user"].to_numpy().tolist(), first["request_id"].to_numpy(), strict=True):
        neg = by_req.get(req)
        if neg:
            out[int(u)] = np.unique(np.asarray(neg, np.int64))
    return out


def _capture(engine: Any, ds: Dataset, hold: Any, max_users: int, seed: int, progress: bool,
             pages: dict[int, np.ndarray] | None = None, known: np.ndarray | None = None, workers: int = 1
             ) -> tuple[list[tuple[Any, Any, int, float, Any, np.ndarray]], int]:
    """((ctx, candidate set entering the first scorer, row of the target or -1, the user's last
    event time before the target (orders the validation split), the engine's catalogue, rows
    of the candidates shown on the target's page and passed over) for (a sample of)
    ``hold``'s test users, the number of users left out because no target is in ``known``).

    ``pages`` (:func:`_page_negatives`): the notes of a user's target page count as not yet
    seen, as they were when that page was served, so recall may return them and they keep
    the features a served candidate has. ``workers > 1``: that many forked processes ask
    the engine (a copy-on-write image of it) for chunks of the users, one thread each, as
    the feed evaluation's workers do; the same samples in the same order."""
    global _CAPTURING
    users = hold.test_users
    targets = hold.test_items
    rows = np.arange(len(users))
    unseen = 0
    if known is not None:
        ok = has_seen_target(targets, known)
        unseen, rows = int((~ok).sum()), rows[ok]
    if len(rows) > max_users:
        rows = np.sort(rows[np.random.default_rng(seed).choice(len(rows), max_users, replace=False)])
    first_scorer = next(s.name for s in engine.pipelines["default"].steps if s.kind == "scorer")
    _CAPTURING = (engine, ds.users["user_id"].astype(str).to_numpy(), users, targets, pages or {},
                  ds.events.groupby("user")["ts"].max(), first_scorer)
    chunks = [rows[i: i + CAPTURE_CHUNK] for i in range(0, len(rows), CAPTURE_CHUNK)]
    bar = tqdm(total=len(rows), desc="rank samples", disable=None if progress else True, leave=False)
    out: list[tuple[Any, Any, int, float, Any, np.ndarray]] = []
    try:
        for part in forked_imap(_captured_chunk, chunks, workers):
            out += part
            bar.update(len(part))
    finally:
        _CAPTURING = None
        bar.close()
    return [(ctx, cs, hit, ts, engine.catalog, neg) for ctx, cs, hit, ts, neg in out], unseen


#: users per task of a forked capture
CAPTURE_CHUNK = 128
#: (engine, user ids, test users, test items, pages, last event time per user, first scorer)
#: of the capture in progress, inherited by its forked workers
_CAPTURING: tuple[Any, ...] | None = None


def _captured_chunk(rows: np.ndarray) -> list[tuple[Any, Any, int, float, np.ndarray]]:
    """:func:`_capture`'s samples (without the catalogue) for the test rows ``rows``."""
    assert _CAPTURING is not None
    engine, ids, users, targets, pages, last_ts, first_scorer = _CAPTURING
    out = []
    for r in rows:
        u = int(users[r])
        ctx = engine.context(str(ids[u]))
        neg = pages.get(u)
        if neg is not None:
            ctx = dataclasses.replace(ctx, seen=ctx.seen[~np.isin(ctx.seen, neg)])
        cs = engine.pipelines["default"].run(ctx, 10, stop_before=first_scorer).candidates
        tgt = targets.indices[targets.indptr[r]: targets.indptr[r + 1]]
        hit = np.flatnonzero(np.isin(cs.items, tgt))
        negrows = np.flatnonzero(np.isin(cs.items, neg)) if neg is not None else np.empty(0, np.int64)
        out.append((ctx, cs, int(hit[0]) if len(hit) else -1, float(last_ts.get(u, 0)), negrows))
    return out


def _train_rankers(config: Any, groups: list, learned: list[str], components: dict[str, Any],
                   report: dict[str, Any], progress: bool, seed: int) -> None:
    from notefeed.rank.ltr import Group, ListwiseRanker
    from notefeed.serve.components import TopK
    from notefeed.serve.factory import small_creator_reserve
    from notefeed.serve.learned import ChannelFeatures, candidate_features, feature_matrix

    c0 = time.process_time()
    feats = [candidate_features(g[4], g[0], g[1]) for g in groups]
    report["coarse_features_cpu_s"] = time.process_time() - c0
    names = sorted({k for f in feats for k in f})
    coarse_model = None
    if "coarse" in learned:
        cnames = [n for n in names if n.startswith(COARSE_PREFIXES)]
        cg = [Group(feature_matrix(f, cnames, len(cs)), pos, ts, neg)
              for f, (_, cs, pos, ts, _, neg, _chans) in zip(feats, groups, strict=True) if pos >= 0]
        # gated against the formula an untrained coarse stage serves (``builtin/popularity``):
        # a ranker that does not beat it out of fold serves exactly that formula
        c0 = time.process_time()
        coarse_model = ListwiseRanker(cnames, ranker_config(config, "coarse", seed)).fit(cg, progress, "coarse ranker")
        report["coarse_fit_cpu_s"] = time.process_time() - c0
        coarse_model.version = "rank/ltr:coarse"
        components["coarse"] = coarse_model
        report["coarse"] = coarse_model.metrics
    if "fine" not in learned:
        return
    c0 = time.process_time()
    reserve = small_creator_reserve(config)
    hydrates: dict[int, Any] = {}  # one per hold-out depth's channels
    fine_feats = []
    for f, (ctx, cs, pos, ts, catalog, neg, chans) in zip(feats, groups, strict=True):
        if pos < 0:
            continue
        hydrate = hydrates.get(id(chans))
        if hydrate is None:
            hydrate = hydrates[id(chans)] = ChannelFeatures(list(chans.values()))
        if coarse_model is not None:
            keep = TopK("coarse", config.coarse.keep, "coarse/keep", reserve, catalog)
            cs.columns["coarse"] = coarse_model.predict(feature_matrix(f, coarse_model.feature_names, len(cs)))
            kept = keep.select(ctx, cs, 0)
            where = np.flatnonzero(kept == pos)
            if not len(where):  # the coarse keep dropped the target: no fine training point
                continue
            cs, pos, neg = cs.take(kept), int(where[0]), np.flatnonzero(np.isin(kept, neg))
        cs.columns.update(hydrate.score(ctx, cs))
        ff = candidate_features(catalog, ctx, cs)
        fine_feats.append((ff, len(cs), pos, ts, neg))
    report["fine_features_cpu_s"] = time.process_time() - c0
    fnames = sorted({k for ff, _, _, _, _ in fine_feats for k in ff})
    fg = [Group(feature_matrix(ff, fnames, n), pos, ts, neg) for ff, n, pos, ts, neg in fine_feats]
    c0 = time.process_time()
    fine_model = ListwiseRanker(fnames, ranker_config(config, "fine", seed)).fit(fg, progress, "fine ranker")
    report["fine_fit_cpu_s"] = time.process_time() - c0
    fine_model.version = "rank/ltr:fine"
    components["fine"] = fine_model
    report["fine"] = fine_model.metrics
    report["fine_target_kept_by_coarse"] = len(fg) / max(1, sum(g[2] >= 0 for g in groups))
