"""sequence/sasrec: learns a planted next-item rule, honours the recall contract, round-trips."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from notefeed.data.dataset import Dataset
from notefeed.recall import CHANNELS, SASRecChannel
from notefeed.recall.base import Candidates, UserContext

N_ITEMS = 24
PARAMS = {"dim": 32, "layers": 1, "heads": 2, "max_len": 12, "dropout": 0.0, "epochs": 30,
          "batch_size": 32, "lr": 5e-3, "progress": False, "threads": 1, "bf16": False}


def cycle_log(reverse: bool = False, n_users: int = 160, length: int = 10, noise: float = 0.1) -> Dataset:
    """Every user walks the cycle ``i -> i + 1 (mod N_ITEMS)`` from a random start; ``noise``
    of the steps are a random note instead. ``reverse`` flips time, so the rule becomes ``i -> i - 1``.
    """
    rng = np.random.default_rng(0)
    rows = []
    for u in range(n_users):
        items = (rng.integers(N_ITEMS) + np.arange(length)) % N_ITEMS
        noisy = rng.random(length) < noise
        items[noisy] = rng.integers(N_ITEMS, size=int(noisy.sum()))
        for t, i in enumerate(items):
            rows.append((f"u{u}", f"n{i}", (length - t) if reverse else t, "click"))
    ev = pd.DataFrame(rows, columns=["user_id", "note_id", "ts", "type"])
    notes = pd.DataFrame({"note_id": [f"n{i}" for i in range(N_ITEMS)]})
    return Dataset.build("cycle", ev, notes=notes)


def note_index(ds: Dataset, i: int) -> int:
    return ds.item_index[f"n{i}"]


def next_note_accuracy(ch: SASRecChannel, ds: Dataset, step: int) -> float:
    """Share of notes ``i`` for which a history ``i - 2s, i - s, i`` recalls ``i + s`` first."""
    hits = 0
    for i in range(N_ITEMS):
        hist = np.array([note_index(ds, (i + j * step) % N_ITEMS) for j in (-2, -1, 0)])
        top = ch.recall(UserContext("u", None, history=hist), 1).items
        hits += int(top.size == 1 and top[0] == note_index(ds, (i + step) % N_ITEMS))
    return hits / N_ITEMS


@pytest.fixture(scope="module")
def forward():
    ds = cycle_log()
    return ds, SASRecChannel(**PARAMS).fit(ds)


def test_learns_the_planted_next_note(forward):
    ds, ch = forward
    assert next_note_accuracy(ch, ds, +1) >= 0.8


def test_order_matters_reversed_time_learns_the_reverse_rule(forward):
    """Control: the same co-occurrences in reversed time order must flip the prediction."""
    ds, ch = forward
    rev = cycle_log(reverse=True)
    ch_rev = SASRecChannel(**PARAMS).fit(rev)
    assert next_note_accuracy(ch_rev, rev, -1) >= 0.8
    assert next_note_accuracy(ch_rev, rev, +1) <= 0.2
    assert next_note_accuracy(ch, ds, -1) <= 0.2


def test_never_returns_history_seen_or_hidden(forward):
    ds, ch = forward
    hist = np.array([note_index(ds, i) for i in (3, 4, 5)])
    seen, hidden = np.array([note_index(ds, 6)]), np.array([note_index(ds, 7)])
    c = ch.recall(UserContext("u", 0, history=hist, seen=seen, hidden=hidden), N_ITEMS)
    assert isinstance(c, Candidates) and c.channel == "sequence/sasrec"
    assert len(c) == N_ITEMS - 5
    assert not set(c.items.tolist()) & set(hist.tolist() + seen.tolist() + hidden.tolist())
    assert (np.diff(c.scores) <= 0).all()


def test_empty_or_unknown_history_gives_nothing_and_never_raises(forward):
    _, ch = forward
    assert len(ch.recall(UserContext("stranger", None), 10)) == 0
    assert len(ch.recall(UserContext("u", None, history=np.array([N_ITEMS, 999, -1])), 10)) == 0
    assert len(ch.recall(UserContext("u", None, history=np.array([1, 2])), 0)) == 0
    np.testing.assert_array_equal(ch.score_items(UserContext("stranger", None), np.array([0, 1])), [0.0, 0.0])


def test_unknown_items_in_history_are_ignored(forward):
    _, ch = forward
    hist = np.array([3, 4, 5])
    a = ch.recall(UserContext("u", None, history=hist), 10)
    b = ch.recall(UserContext("u", None, history=np.array([N_ITEMS + 7, 3, 4, 999, 5, N_ITEMS])), 10)
    np.testing.assert_array_equal(a.items, b.items)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6)


def test_score_items_agrees_with_recall(forward):
    _, ch = forward
    ctx = UserContext("u", None, history=np.array([10, 11, 12]))
    c = ch.recall(ctx, 8)
    s = ch.score_items(ctx, c.items)
    assert s.dtype == np.float32 and s.shape == (8,)
    np.testing.assert_allclose(s, c.scores, rtol=1e-6)
    # notes the model never saw score the catalogue minimum, below every recalled note
    unknown = ch.score_items(ctx, np.array([N_ITEMS, N_ITEMS + 50, c.items[0]]))
    assert unknown[0] == unknown[1] <= s.min() and unknown[2] == s[0]


def test_item_vectors_and_registry(forward):
    _, ch = forward
    v = ch.item_vectors
    assert v.shape == (N_ITEMS, 32) and v.dtype == np.float32
    assert CHANNELS.get("sequence/sasrec") is SASRecChannel


def test_save_load_round_trip_gives_identical_scores(forward, tmp_path):
    _, ch = forward
    ch.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    back = SASRecChannel.load(tmp_path / "m")
    assert back.max_len == ch.max_len and back.n_items == ch.n_items
    ctx = UserContext("u", None, history=np.array([1, 2, 3, 9]), seen=np.array([4]))
    a, b = ch.recall(ctx, 10), back.recall(ctx, 10)
    np.testing.assert_array_equal(a.items, b.items)
    np.testing.assert_array_equal(a.scores, b.scores)
    items = np.arange(N_ITEMS + 2)
    np.testing.assert_array_equal(ch.score_items(ctx, items), back.score_items(ctx, items))
    np.testing.assert_array_equal(ch.item_vectors, back.item_vectors)


def test_load_rejects_a_broken_directory(forward, tmp_path):
    _, ch = forward
    with pytest.raises(ValueError, match="cannot load"):
        SASRecChannel.load(tmp_path / "missing")
    ch.save(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(ValueError, match="cannot load"):
        SASRecChannel.load(tmp_path / "m")


def test_sampled_loss_and_time_cap():
    ds = cycle_log(n_users=60)
    ch = SASRecChannel(**{**PARAMS, "epochs": 50}, loss="sampled", n_negatives=8, max_time_s=0.05).fit(ds)
    assert 1 <= ch.epochs_run < 50
    c = ch.recall(UserContext("u", None, history=np.array([0, 1])), 5)
    assert len(c) == 5 and not {0, 1} & set(c.items.tolist())


def test_a_catalogue_past_full_ce_max_trains_with_the_sampled_loss():
    ds = cycle_log(n_users=60)
    assert SASRecChannel(**{**PARAMS, "epochs": 1}).fit(ds).loss_used == "ce"
    ch = SASRecChannel(**{**PARAMS, "epochs": 1}, full_ce_max=ds.n_items - 1, n_negatives=4).fit(ds)
    assert ch.loss_used == "sampled" and len(ch.recall(UserContext("u", None, history=np.array([0])), 3)) == 3


def test_min_steps_trains_a_small_log_for_more_epochs():
    ds = cycle_log(n_users=60)  # 60 users, batch 32: 2 steps an epoch
    base = {**PARAMS, "epochs": 1, "batch_size": 32}
    assert SASRecChannel(**base).fit(ds).epochs_run == 1
    assert SASRecChannel(**base, min_steps=10).fit(ds).epochs_run == 5
    # a log of min_steps_below sequences or more trains its epochs only (a large log overfit)
    assert SASRecChannel(**base, min_steps=10, min_steps_below=60).fit(ds).epochs_run == 1
    assert SASRecChannel(**base, min_steps=10, min_steps_below=61).fit(ds).epochs_run == 5


@pytest.mark.parametrize("bad", [{"dim": 0}, {"dropout": 1.0}, {"loss": "bce"}, {"lr": 0.0},
                                 {"max_time_s": 0}, {"threads": 0}, {"dim": 30, "heads": 4},
                                 {"min_steps": -1}, {"ensemble": 0}])
def test_rejects_bad_params(bad):
    with pytest.raises(ValueError):
        SASRecChannel(**bad).fit(cycle_log(n_users=4))


def test_hnsw_above_the_threshold_recalls_what_exact_scoring_does(forward, tmp_path):
    """A catalogue of ``hnsw_min`` notes or more recalls through HNSW (1M notes: exact scoring
    alone is ~10 ms a request): the same notes, scores equal to the exact logits, and
    ``score_items`` equal to exact for known notes; the index survives a save/load."""
    ds, exact = forward
    from notefeed.models.artifacts import load_component, save_component

    params, arrays = exact.to_state()
    params["params"]["hnsw_min"] = 10
    ann = SASRecChannel.from_state(params, arrays)
    assert ann._ann is not None and exact._ann is None
    ctx = UserContext("u", None, history=np.array([3, 4, 5]), seen=np.array([9]))
    a, b = exact.recall(ctx, 10), ann.recall(ctx, 10)
    assert len(np.intersect1d(a.items, b.items)) >= 9
    assert not np.isin(b.items, [3, 4, 5, 9]).any()
    np.testing.assert_allclose(b.scores, exact.score_items(ctx, b.items), rtol=1e-4, atol=1e-4)
    items = np.array([0, 7, N_ITEMS + 3])
    s = ann.score_items(ctx, items)
    np.testing.assert_allclose(s[:2], exact.score_items(ctx, items)[:2], rtol=1e-5)
    assert s[2] == s[:2].min()  # outside the catalogue: the lowest of the known ones asked
    save_component(ann, tmp_path / "c")
    import notefeed.recall.ann as ann_mod

    def no_build(*a, **k):  # a stored version carries its index: loading it builds none
        raise AssertionError("HNSW rebuilt at load")

    orig, ann_mod.AnnIndex.of_rows = ann_mod.AnnIndex.of_rows, no_build
    try:
        back = load_component(tmp_path / "c")
    finally:
        ann_mod.AnnIndex.of_rows = orig
    assert back._ann is not None
    np.testing.assert_array_equal(back.recall(ctx, 10).items, b.items)


def test_ensemble_scores_are_the_sum_of_its_networks_logits(forward, tmp_path):
    """ensemble=2: two networks with seeds 0 and 7919, served as one whose logits are the sum of
    theirs; it still learns the rule, and every persistence path keeps its scores."""
    ds, single = forward
    params = {**PARAMS, "epochs": 15}
    ens = SASRecChannel(**params, ensemble=2).fit(ds)
    one = SASRecChannel(**params).fit(ds)  # seed 0: the first member
    other = SASRecChannel(**params, seed=7919).fit(ds)
    assert ens.item_vectors.shape == (ds.n_items, 2 * PARAMS["dim"])
    assert np.array_equal(ens.item_vectors[:, : PARAMS["dim"]], one.item_vectors)
    assert not np.allclose(one.item_vectors, other.item_vectors)
    ctx = UserContext("u", None, history=np.array([note_index(ds, i) for i in (3, 4, 5)]))
    items = np.arange(ds.n_items)
    want = one.score_items(ctx, items) + other.score_items(ctx, items)
    np.testing.assert_allclose(ens.score_items(ctx, items), want, rtol=1e-5, atol=1e-5)
    assert next_note_accuracy(ens, ds, +1) >= 0.8
    assert ens.epochs_run == one.epochs_run + other.epochs_run
    ens.save(tmp_path / "m")
    back = SASRecChannel.load(tmp_path / "m")
    assert back.ensemble == 2
    np.testing.assert_array_equal(back.score_items(ctx, items), ens.score_items(ctx, items))
    meta, arrays = ens.to_state()
    again = SASRecChannel.from_state(meta, arrays)
    np.testing.assert_array_equal(again.score_items(ctx, items), ens.score_items(ctx, items))
    assert any(k.startswith("members.1.") for k in arrays)
    assert not any(k.startswith("members.") for k in single.to_state()[1])  # one network: the keys as before


def _fit_in_worker(ds: Dataset) -> dict[str, np.ndarray]:
    ch = SASRecChannel(**{**PARAMS, "epochs": 3}, ensemble=2).fit(ds)
    return {"vectors": ch.item_vectors, "workers": np.array(ch.train_workers)}


def test_ensemble_networks_train_at_once_in_forked_processes_with_the_same_weights(forward):
    """parallel (the default): each network of an ensemble trains in its own forked process,
    and the weights are bit-identical to training them one after another here; inside a pool
    worker (which cannot fork) the fit trains them here."""
    import multiprocessing as mp
    import os

    import torch

    from notefeed.threads import forked_imap

    ds, _ = forward
    params = {**PARAMS, "epochs": 3}
    here = SASRecChannel(**params, ensemble=2, parallel=False).fit(ds)
    at_once = SASRecChannel(**params, ensemble=2).fit(ds)
    assert here.train_workers == 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    forks = "fork" in mp.get_all_start_methods()
    assert at_once.train_workers == (2 if cores >= 2 and forks else 1)
    a, b = here._net.state_dict(), at_once._net.state_dict()
    assert set(a) == set(b) and any(k.startswith("members.1.") for k in a)
    for k in a:
        assert np.array_equal(a[k].numpy(), b[k].numpy()), k
    assert (at_once.epochs_run, at_once.loss_used, at_once.sparse_used) == (here.epochs_run, here.loss_used,
                                                                              here.sparse_used)
    # one process each: no forking (one network, more torch threads, or asked not to)
    for kw in ({"ensemble": 1}, {"ensemble": 2, "threads": 2}, {"ensemble": 2, "parallel": False}):
        assert SASRecChannel(**{**params, **kw})._member_workers(torch.device("cpu")) == 1
    if forks and cores >= 2:  # a pool worker is a daemon: it trains the networks itself
        got = list(forked_imap(_fit_in_worker, [ds, ds], 2))
        for r in got:
            assert int(r["workers"]) == 1
            np.testing.assert_array_equal(r["vectors"], here.item_vectors)
