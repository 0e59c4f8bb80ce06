"""Bad input -> ValueError naming the field; documented edge cases; the re-ranker contract."""

from __future__ import annotations

import numpy as np
import pytest

from notefeed.rerank import RERANKERS, FairnessConfig, ReRanker, RerankInput, RuleConfig, SSDReRanker

N, D = 12, 4


def _ok(**over: object) -> RerankInput:
    rng = np.random.default_rng(0)
    fields: dict[str, object] = dict(
        scores=rng.normal(size=N),
        vectors=rng.normal(size=(N, D)),
        authors=np.arange(N) % 3,
        categories=np.arange(N) % 2,
        small_creator=np.arange(N) % 2 == 0,
        ids=np.array([f"n{i}" for i in range(N)]),
    )
    fields.update(over)
    return RerankInput(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", RERANKERS.names())
def test_contract_every_registered_reranker(name: str) -> None:
    rr = RERANKERS.create(name)
    assert isinstance(rr, ReRanker) and rr.name == name
    got = rr.select(_ok(), 5)
    assert got.dtype == np.int64 and got.shape == (5,) and len(set(got.tolist())) == 5
    assert got.min() >= 0 and got.max() < N
    assert len(rr.select(_ok(), N + 7)) == N  # k > N returns all N
    assert len(rr.select(_ok(), 0)) == 0
    rr_rules = RERANKERS.create(name, rules=RuleConfig(author_window=2), fairness=FairnessConfig(mode="hard"))
    assert len(rr_rules.select(_ok(), N)) == N


BAD = [
    (dict(scores=np.r_[np.nan, np.zeros(N - 1)]), "scores"),
    (dict(scores=np.r_[np.inf, np.zeros(N - 1)]), "scores"),
    (dict(scores=np.zeros((N, 1))), "scores"),
    (dict(scores=np.array(["a"] * N)), "scores"),
    (dict(vectors=np.zeros((N - 1, D))), "vectors"),
    (dict(vectors=np.zeros(N)), "vectors"),
    (dict(vectors=np.full((N, D), np.nan)), "vectors"),
    (dict(authors=np.zeros(N - 1, int)), "authors"),
    (dict(authors=np.zeros(N, float)), "authors"),
    (dict(categories=np.zeros(N + 1, int)), "categories"),
    (dict(small_creator=np.full(N, 3)), "small_creator"),
    (dict(small_creator=np.zeros(2, bool)), "small_creator"),
    (dict(ids=np.array(["a"] * N)), "ids"),
    (dict(ids=np.arange(N - 1)), "ids"),
]


@pytest.mark.parametrize("name", ["rerank/ssd", "rerank/dpp", "rerank/mmr", "rerank/topk"])
@pytest.mark.parametrize("over, field", BAD)
def test_bad_input_names_the_field(name: str, over: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"'{field}'"):
        RERANKERS.create(name).select(_ok(**over), 3)


@pytest.mark.parametrize("k", [-1, 2.5, True, "3"])
def test_bad_k(k: object) -> None:
    with pytest.raises(ValueError, match="'k'"):
        SSDReRanker().select(_ok(), k)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "factory, params, field",
    [
        ("rerank/ssd", dict(gamma=-1.0), "gamma"),
        ("rerank/ssd", dict(bias=-1.0), "bias"),
        ("rerank/dpp", dict(theta=1.0), "theta"),
        ("rerank/mmr", dict(lam=1.5), "lam"),
    ],
)
def test_bad_config(factory: str, params: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        RERANKERS.create(factory, **params)


@pytest.mark.parametrize("cfg, field", [
    (lambda: RuleConfig(author_max=0), "author_max"),
    (lambda: RuleConfig(author_window=-1), "author_window"),
    (lambda: RuleConfig(category_cap=0), "category_cap"),
    (lambda: FairnessConfig(target=1.5), "target"),
    (lambda: FairnessConfig(mode="always"), "mode"),  # type: ignore[arg-type]
])
def test_bad_rule_config(cfg, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        cfg()


@pytest.mark.parametrize("name", RERANKERS.names())
def test_zero_vectors_are_selectable(name: str) -> None:
    vectors = np.random.default_rng(1).normal(size=(N, D))
    vectors[:4] = 0.0  # the four best items have no embedding
    scores = np.r_[np.full(4, 10.0), np.zeros(N - 4)]
    got = RERANKERS.create(name).select(RerankInput(scores, vectors), N)
    assert len(got) == N and set(range(4)) <= set(got.tolist())
    first = RERANKERS.create(name).select(RerankInput(scores, vectors), 1)
    assert first[0] < 4  # with no similarity information, quality decides


def test_single_candidate_and_constant_scores() -> None:
    assert SSDReRanker().select(RerankInput(np.array([0.3]), np.ones((1, 3))), 5).tolist() == [0]
    got = SSDReRanker().select(RerankInput(np.zeros(N), np.random.default_rng(2).normal(size=(N, D))), N)
    assert sorted(got.tolist()) == list(range(N))
