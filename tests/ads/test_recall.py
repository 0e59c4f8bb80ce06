import numpy as np
import pytest

from notefeed.ads.base import AdCandidates, AdRecallChannel, AdRequest
from notefeed.ads.keywords import KeywordIndex
from notefeed.ads.recall import (
    AdRecall,
    KeywordChannel,
    LogisticPCTR,
    RewriteChannel,
    SemanticChannel,
    evidence_features,
    merge_quotas,
    pctr_features,
)
from notefeed.search.rewrite import MinedRewrites


def _index():
    return KeywordIndex([(0, "tokyo flights", "exact"), (1, "tokyo flights", "phrase"),
                         (2, "flights tokyo", "broad"), (3, "东京 机票", "broad")])


def test_match_types():
    ix = _index()
    ids, sc = ix.match("TOKYO  flights")
    assert ids.tolist() == [0, 1, 2] and sc[0] > sc[1] > sc[2]
    assert ix.match("cheap tokyo flights")[0].tolist() == [1, 2]  # exact needs the whole query
    assert ix.match("flights to tokyo")[0].tolist() == [2]  # only broad ignores order and gaps
    assert ix.match("东京机票")[0].tolist() == [3]
    assert len(ix.match("paris")[0]) == 0
    with pytest.raises(ValueError, match="match"):
        ix.add(9, "x", "fuzzy")


class _Fake:
    name = "fake/fixed"

    def __init__(self, ids, scores):
        self.ids, self.scores = ids, scores

    def retrieve(self, request, k):
        return AdCandidates(np.array(self.ids[:k], np.int64), np.array(self.scores[:k], np.float32),
                            [self.name] * len(self.ids[:k]))


class _Broken:
    name = "fake/broken"

    def retrieve(self, request, k):
        raise RuntimeError("down")


@pytest.mark.parametrize("make", [
    lambda: KeywordChannel(_index()),
    lambda: RewriteChannel(_index(), MinedRewrites({"tyo flights": [("tokyo flights", 1.0)]})),
    lambda: SemanticChannel(lambda t: np.tile(np.eye(4, dtype=np.float32)[0], (len(t), 1)), np.eye(4, dtype=np.float32)),
    lambda: _Fake([1, 2], [0.5, 0.4]),
])
def test_channel_contract(make):
    ch = make()
    assert isinstance(ch, AdRecallChannel) and "/" in ch.name
    for req in (AdRequest(query="tyo flights"), AdRequest(query="tokyo flights"), AdRequest(user_vec=np.eye(4)[0])):
        r = ch.retrieve(req, 3)
        assert len(r.ids) == len(r.scores) == len(r.channels) <= 3
        assert np.all(np.diff(r.scores) <= 1e-6)


def test_rewrite_channel_finds_ads_through_rewrites():
    ch = RewriteChannel(_index(), MinedRewrites({"tyo": [("tokyo", 1.0)]}))
    r = ch.retrieve(AdRequest(query="tyo flights"), 10)  # token level
    assert set(r.ids.tolist()) == {0, 1, 2}


def test_merge_quotas_and_fail_open():
    a, b = _Fake([1, 2, 3], [0.9, 0.8, 0.7]), _Fake([7, 8, 1], [0.95, 0.5, 0.4])
    m = merge_quotas([a.retrieve(None, 9), b.retrieve(None, 9)], [1, 1], 4)
    assert m.ids.tolist()[:2] == [1, 7] and len(m) == 4 and len(set(m.ids.tolist())) == 4
    rec = AdRecall([a, _Broken(), b], [2, 2, 2], k=5)
    out = rec.retrieve(AdRequest(query="x"))
    assert "error" in str(rec.trace["fake/broken"]) and len(out) == 5


def test_logistic_pctr_learns_a_monotone_signal():
    rng = np.random.default_rng(0)
    rel = rng.random(2000)
    y = (rng.random(2000) < 0.02 + 0.2 * rel).astype(int)
    x = pctr_features(rel, np.zeros(2000), np.full(2000, 0.05))
    m = LogisticPCTR().fit(x, y)
    p = m.pctr(pctr_features(np.array([0.1, 0.9]), np.zeros(2), np.full(2, 0.05)))
    assert 0 < p[0] < p[1] < 1


def test_evidence_features_carry_the_channel_scores_the_basic_ones_lack():
    """Clicks that follow the two-tower cosine (and a rewrite hit), not the text cosine: only the
    evidence features let the logistic pCTR rank them (held-out AUC), and they keep the basic
    columns first."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    n = 6000
    text, tower = rng.random(n), rng.random(n)
    rw = np.where(rng.random(n) < 0.2, 0.9, 0.0)
    y = (rng.random(n) < 0.01 + 0.15 * tower + 0.1 * (rw > 0)).astype(int)
    base = pctr_features(text, np.zeros(n), np.full(n, 0.05))
    x = evidence_features(base, tower, rw)
    assert x.shape == (n, 7) and np.array_equal(x[:, :4], base)
    assert np.array_equal(x[:, 4], tower) and np.array_equal(x[:, 6], (rw > 0).astype(float))
    tr, te = slice(0, 4000), slice(4000, n)
    auc_basic = roc_auc_score(y[te], LogisticPCTR().fit(base[tr], y[tr]).pctr(base[te]))
    auc_ev = roc_auc_score(y[te], LogisticPCTR().fit(x[tr], y[tr]).pctr(x[te]))
    assert auc_basic < 0.56 and auc_ev > auc_basic + 0.08


def test_keyword_index_agrees_with_the_definition():
    """Exact / phrase / broad by dictionary lookups (n-grams, token subsets) == the plain definition."""
    from notefeed.ads.keywords import MATCH_SCORE

    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(6)]
    kws = [(a, " ".join(rng.choice(vocab, int(rng.integers(1, 4)))), str(rng.choice(["exact", "phrase", "broad"])))
           for a in range(60)]
    for max_subset in (8, 1):  # subsets, and the token-by-token fallback
        ix = KeywordIndex(kws, max_subset_tokens=max_subset)
        for _ in range(200):
            q = list(rng.choice(vocab, int(rng.integers(1, 6))))
            want: dict[int, float] = {}
            for a, text, m in kws:
                k = text.split()
                hit = (k == q if m == "exact" else
                       any(q[i: i + len(k)] == k for i in range(len(q))) if m == "phrase" else set(k) <= set(q))
                if hit:
                    want[a] = max(want.get(a, 0.0), MATCH_SCORE[m])
            ids, sc = ix.match(" ".join(q))
            assert {a: round(s, 3) for a, s in zip(ids.tolist(), sc.tolist(), strict=True)} == {
                a: round(s, 3) for a, s in want.items()}
            assert np.all(np.diff(sc) <= 0)


def _merge_reference(results, quotas, k, fused=None):
    """The plain-loop definition of merge_quotas."""
    seen, order = {}, []
    for res, q in zip(results, quotas, strict=True):
        for a, s, ch in list(zip(res.ids.tolist(), res.scores.tolist(), res.channels, strict=True))[:q]:
            if a not in seen and len(order) < k:
                seen[a] = (s, ch)
                order.append(a)
    rest = {}
    for res in results:
        for a, s, ch in zip(res.ids.tolist(), res.scores.tolist(), res.channels, strict=True):
            if a not in seen and s > rest.get(a, (-np.inf, ""))[0]:
                rest[a] = (s, ch)
    if rest and len(order) < k:
        ids = np.fromiter(rest, np.int64, len(rest))
        sc = np.array([rest[a][0] for a in rest], np.float64)
        key = fused(ids, sc) if fused is not None else sc
        for j in np.argsort(-key, kind="stable")[: k - len(order)]:
            seen[int(ids[j])] = rest[int(ids[j])]
            order.append(int(ids[j]))
    return order, [seen[a][1] for a in order], [seen[a][0] for a in order]


def test_merge_quotas_matches_its_definition():
    rng = np.random.default_rng(3)
    for _ in range(300):
        results = []
        for c in range(int(rng.integers(1, 4))):
            m = int(rng.integers(0, 12))
            ids = rng.choice(15, m, replace=False)
            sc = np.round(rng.random(m), 1).astype(np.float32)  # ties on purpose
            results.append(AdCandidates(ids.astype(np.int64), sc, [f"c{c}"] * m))
        quotas = [int(x) for x in rng.integers(0, 5, len(results))]
        k = int(rng.integers(1, 20))
        fused = None if rng.random() < 0.5 else (lambda i, s: s + 0.01 * (i % 3))
        got = merge_quotas(results, quotas, k, fused)
        want = _merge_reference(results, quotas, k, fused)
        assert got.ids.tolist() == want[0] and got.channels == want[1]
        assert np.allclose(got.scores, want[2])


def test_query_memo_computes_once_and_forgets_past_its_cap():
    from notefeed.ads.base import QueryMemo

    calls = []
    memo: QueryMemo[int] = QueryMemo(cap=3)
    for q in ["a", "b", "a", "c", "a"]:
        memo.get(q, lambda q=q: calls.append(q) or len(calls))
    assert calls == ["a", "b", "c"] and len(memo) == 3
    assert memo.get("d", lambda: 99) == 99 and len(memo) == 1  # full: cleared, then d added
