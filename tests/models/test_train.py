"""``notefeed train``: fits what the config names, stores a version, ``serve`` loads it."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from notefeed.cli import app
from notefeed.data.store import Workspace
from notefeed.models import ModelStore
from notefeed.serve.cli import load_workspace_dataset
from notefeed.serve.versions import engine_from_store
from tests.eval.test_feed import _config, chain_log


def test_train_stores_a_version_that_serve_loads(tmp_path):
    ws = tmp_path / "ws"
    with Workspace.open(ws) as w:
        w.save_dataset(chain_log())
    cfg = _config()
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps(cfg.model_dump(mode="json")))
    out = tmp_path / "train.json"
    r = CliRunner().invoke(app, ["train", "--workspace", str(ws), "--config", str(cfg_file), "--json", str(out)])
    assert r.exit_code == 0, r.output
    store = ModelStore(ws)
    version = store.promoted()
    assert version is not None and f"stored version {version}" in r.output
    rec = json.loads(out.read_text())  # --json: the version, its data and where the time went
    assert rec["version"] == version and rec["data"]["n_events"] > 0 and rec["wall_s"] > 0
    rep = rec["train_report"]
    assert rep["fit_s"] <= rec["wall_s"] and rep["channels_cpu_s"] >= 0 and "recall.channels.0:" in next(
        iter(rep["channel_fit_s"]))
    man = store.manifest(version)
    assert set(man["components"]) == {"recall.channels.0", "coarse", "fine"}
    assert man["metrics"]["fine"]["valid_hr10_in_candidates"] >= 0
    assert man["data"]["n_events"] > 0
    ds = load_workspace_dataset(ws)
    eng = engine_from_store(ds, cfg, ws)
    try:
        assert eng.model_version == version and not eng.served.fallback
        names = [s.name for s in eng.pipelines["default"].steps]
        assert "coarse/ltr" in names and "features/channels" in names
        _, res = eng.feed("u3", 10)
        assert len(res.items) == 10 and not res.errors
    finally:
        eng.close()


def test_learned_config_without_a_version_says_fallback(tmp_path):
    from notefeed.serve.engine import Engine

    eng = Engine(chain_log(), _config(), tmp_path / "ws")
    try:
        reasons = " ".join(eng.served.fallback)
        assert "coarse: rank/ltr not trained" in reasons and "fine: rank/ltr not trained" in reasons
        _, res = eng.feed("u3", 10)  # the built-ins serve meanwhile
        assert len(res.items) == 10
    finally:
        eng.close()


def test_train_errors_are_one_line(tmp_path):
    r = CliRunner().invoke(app, ["train", "--workspace", str(tmp_path)])
    assert r.exit_code == 2 and r.output.startswith("error: --workspace") and len(r.output.strip().splitlines()) == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("coarse: {nope: 1}\n")
    r = CliRunner().invoke(app, ["train", "--workspace", str(tmp_path), "--config", str(bad)])
    assert r.exit_code == 2 and "--config" in r.output


def test_page_negatives_are_the_notes_shown_beside_the_target_and_passed_over():
    import pandas as pd

    from notefeed.data.dataset import Dataset
    from notefeed.eval.splits import leave_last_out
    from notefeed.models.train import _has_pages, _page_negatives

    rows = [("u0", "a", 1, "click", "r0"), ("u0", "b", 2, "click", "r0")]  # u0's earlier page
    rows += [("u0", n, 10, "impression", "r1") for n in "cdef"]
    rows += [("u0", "d", 11, "click", "r1"), ("u0", "e", 12, "like", "r1"),  # d and e engaged with
             ("u1", "a", 1, "click", "r2"), ("u1", "c", 20, "click", "r3")]  # u1: a click on no shown page
    ev = pd.DataFrame(rows, columns=["user_id", "note_id", "ts", "type", "request_id"])
    ds = Dataset.build("pages", ev)
    assert _has_pages(ds) and not _has_pages(Dataset.build("plain", ev.drop(columns="request_id")))
    hold = leave_last_out(ds)
    pages = _page_negatives(ds, hold)
    u0, u1 = ds.user_index["u0"], ds.user_index["u1"]
    # u0's last new note is e (ts 12): its page r1 showed c, d, e, f; d and e were engaged with
    assert sorted(ds.notes["note_id"].to_numpy()[pages[u0]]) == ["c", "f"]
    assert u1 not in pages  # r3 logged no impressions


def test_rankers_learn_from_the_pages_of_a_log_with_impressions():
    import numpy as np
    import pandas as pd

    from notefeed.data.dataset import Dataset
    from notefeed.models.train import train_components

    rng = np.random.default_rng(0)
    rows = []
    for u in range(120):  # chains as in chain_log, each step a logged page of 5 with the next note on it
        start = int(rng.integers(100))
        for t in range(8):
            nxt = f"n{(start + t) % 100}"
            shown = [nxt, *(f"n{int(i)}" for i in rng.choice(100, 4, replace=False))]
            for k, n in enumerate(rng.permutation(shown)):
                rows.append((f"u{u}", n, 1_700_000_000 + 100 * t + k, "impression", f"r{u}-{t}"))
            rows.append((f"u{u}", nxt, 1_700_000_000 + 100 * t + 9, "click", f"r{u}-{t}"))
    ds = Dataset.build("paged-chains", pd.DataFrame(rows, columns=["user_id", "note_id", "ts", "type", "request_id"]))
    on = {"params": {"epochs": 8, "threads": 1, "impression_weight": 1.0}}
    _, rep = train_components(_config(coarse={**_config().coarse.model_dump(), **on},
                                      fine={**_config().fine.model_dump(), **on}), ds, progress=False)
    assert rep["rank_impression_pages"] > 0.5 * rep["rank_users"]
    assert rep["coarse"]["train_page_groups"] > 0 and 0.5 <= rep["fine"]["valid_page_auc"] <= 1.0
    _, rep0 = train_components(_config(), ds, progress=False)  # the default: the pages left unused
    assert rep0["rank_impression_pages"] == 0 and "valid_page_auc" not in rep0["fine"]


def test_channels_fitted_on_a_batch_engine_equal_the_local_fit():
    import numpy as np

    from notefeed.models.train import train_components
    from tests.batch.test_jobs import ShardedLocal, same_csr

    channels = [{"name": "sequence/sasrec", "quota": 50, "params": {"dim": 8, "layers": 1, "heads": 1,
                                                                    "epochs": 1, "progress": False}},
                {"name": "item-to-item/swing", "quota": 50}]
    cfg = _config(recall={"channels": channels}, coarse={"scorer": None}, fine={"scorer": None})
    ds = chain_log()
    local, _ = train_components(cfg, ds, progress=False)
    sharded, _ = train_components(cfg, ds, progress=False, batch_engine=ShardedLocal())
    assert set(local) == set(sharded) == {"recall.channels.0", "recall.channels.1"}
    np.testing.assert_array_equal(local["recall.channels.0"].item_vectors, sharded["recall.channels.0"].item_vectors)
    same_csr(local["recall.channels.1"].sim, sharded["recall.channels.1"].sim)
    assert all(c.engine is None for c in sharded.values())  # serving updates run in-process
    # with the rankers: the served Swing table is refitted on the whole log, on the engine too
    cfg = _config(recall={"channels": channels[1:]})
    local, _ = train_components(cfg, ds, progress=False)
    sharded, rep = train_components(cfg, ds, progress=False, batch_engine=ShardedLocal())
    assert rep["channel_refit"] == "serve" and sharded["recall.channels.0"].engine is None
    same_csr(local["recall.channels.0"].sim, sharded["recall.channels.0"].sim)


def _spy_fits(monkeypatch):
    """Record (component id, events in the log) for every Swing fit."""
    from notefeed.recall.item2item import SwingChannel

    seen: list[tuple[int, int]] = []
    orig = SwingChannel.fit

    def fit(self, ds):
        seen.append((id(self), len(ds.events)))
        return orig(self, ds)

    monkeypatch.setattr(SwingChannel, "fit", fit)
    return seen


def test_refit_serves_channels_fitted_on_the_whole_log(monkeypatch):
    from notefeed.models.train import train_components

    ds = chain_log()
    seen = _spy_fits(monkeypatch)
    # the channels' fits are the point: rankers without their gates' cross-validation (5 more fits each)
    plain = {"params": {"epochs": 8, "threads": 1, "gate": None}}
    cfg = _config(coarse={"scorer": "rank/ltr", "keep": 60, **plain}, fine={"scorer": "rank/ltr", **plain})
    comps, rep = train_components(cfg, ds, progress=False, refit="all")
    served = dict(seen)[id(comps["recall.channels.0"])]
    assert served == len(ds.events) and rep["channel_refit"] == "all"
    depths = rep["rank_holdouts"]
    assert depths >= 2  # a small log: several hold-out depths, each captured on its own fit
    assert len({n for _, n in seen}) == depths + 1 and len(seen) == depths + 1

    seen.clear()  # the default: captures on the deepest log's fit, the served one on the whole log
    comps, rep = train_components(cfg, ds, progress=False)
    assert rep["channel_refit"] == "serve" and len(seen) == 2
    assert dict(seen)[id(comps["recall.channels.0"])] == len(ds.events) and min(n for _, n in seen) < len(ds.events)

    seen.clear()
    comps, rep = train_components(cfg, ds, progress=False, refit="none")
    assert len(seen) == 1 and dict(seen)[id(comps["recall.channels.0"])] < len(ds.events)  # the deepest log only
    with pytest.raises(ValueError, match="refit"):
        train_components(cfg, ds, progress=False, refit="sometimes")


def test_rank_samples_captured_by_forked_workers_equal_one_process(monkeypatch):
    """``workers=2`` runs the pipeline for the rankers' samples in two forked processes: the
    same samples in the same order, so the same trained rankers (on a log with pages, so the
    passed-over rows travel too)."""
    import numpy as np
    import pandas as pd

    import notefeed.models.train as train
    from notefeed.data.dataset import Dataset

    rng = np.random.default_rng(1)
    rows = []
    for u in range(90):
        start = int(rng.integers(60))
        for t in range(6):
            nxt = f"n{(start + t) % 60}"
            for k, n in enumerate([nxt, *(f"n{int(i)}" for i in rng.choice(60, 3, replace=False))]):
                rows.append((f"u{u}", n, 1_700_000_000 + 100 * t + k, "impression", f"r{u}-{t}"))
            rows.append((f"u{u}", nxt, 1_700_000_000 + 100 * t + 9, "click", f"r{u}-{t}"))
    ds = Dataset.build("paged", pd.DataFrame(rows, columns=["user_id", "note_id", "ts", "type", "request_id"]))
    on = {"params": {"epochs": 3, "threads": 1, "impression_weight": 1.0}}
    cfg = _config(coarse={**_config().coarse.model_dump(), **on}, fine={**_config().fine.model_dump(), **on})
    monkeypatch.setattr(train, "CAPTURE_CHUNK", 16)  # several tasks per worker
    import multiprocessing

    forks = []
    real = multiprocessing.get_context
    monkeypatch.setattr(multiprocessing, "get_context", lambda method: forks.append(method) or real(method))
    one, rep1 = train.train_components(cfg, ds, progress=False, workers=1)
    assert forks == []
    two, rep2 = train.train_components(cfg, ds, progress=False, workers=2)
    assert forks and set(forks) == {"fork"}  # one pool per hold-out depth
    assert rep1["rank_users"] == rep2["rank_users"] > 100 and rep2["rank_impression_pages"] > 0
    for key in ("rank_target_recalled", "rank_impression_pages", "rank_targets_unseen"):
        assert rep1[key] == rep2[key]
    for stage in ("coarse", "fine"):
        strip = {k: v for k, v in rep1[stage].items() if not k.endswith("_s")}
        assert strip == {k: v for k, v in rep2[stage].items() if not k.endswith("_s")}
        w1 = one[stage].to_state()[1]
        w2 = two[stage].to_state()[1]
        assert w1.keys() == w2.keys() and all(np.array_equal(w1[k], w2[k]) for k in w1)
