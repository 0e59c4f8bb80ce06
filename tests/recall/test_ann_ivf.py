"""``AnnIndex`` with ``kind="ivf"``: trained on the first vectors added, grows in place,
recalls what exact search does on clustered vectors, and round-trips through its array."""

from __future__ import annotations

import numpy as np
import pytest

from notefeed.recall.ann import AnnIndex, ivf_lists


def _clustered(n: int, dim: int = 16, k: int = 40, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim))
    v = centres[rng.integers(0, k, n)] + 0.3 * rng.normal(size=(n, dim))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def test_ivf_lists_grow_with_the_square_root_and_keep_training_points() -> None:
    assert ivf_lists(1_000_000) == 1000 and ivf_lists(10_000) == 100
    assert ivf_lists(100) == 2 and ivf_lists(10) == 1 and ivf_lists(0) == 1
    assert ivf_lists(10**9) == 4096


def test_auto_chooses_the_named_approximate_kind() -> None:
    assert AnnIndex(8, hnsw_min=100, expected=100, approx="ivf").kind == "ivf"
    assert AnnIndex(8, hnsw_min=100, expected=100).kind == "hnsw"  # the default stays HNSW
    assert AnnIndex(8, hnsw_min=100, expected=99, approx="ivf").kind == "flat"
    with pytest.raises(ValueError, match="'approx' must be hnsw/ivf"):
        AnnIndex(8, approx="pq")
    with pytest.raises(ValueError, match="'kind' must be auto/flat/hnsw/ivf"):
        AnnIndex(8, kind="lsh")
    with pytest.raises(ValueError, match="'nprobe' must be >= 1"):
        AnnIndex(8, kind="ivf", nprobe=0)


def test_ivf_recalls_what_exact_search_does_and_grows_in_place() -> None:
    v = _clustered(20_000)
    ivf = AnnIndex(16, kind="ivf", expected=len(v), nprobe=16)
    s0, i0 = ivf.search(v[:2], 5)  # before any vector: nothing, no error
    assert (i0 == -1).all() and ivf.ntotal == 0
    ivf.add(v[:15_000], np.arange(15_000) + 1000)
    assert ivf.kind == "ivf" and ivf._base.nlist == ivf_lists(20_000)
    ivf.add(v[15_000:], np.arange(15_000, 20_000) + 1000)  # published later: appended, no retraining
    assert ivf.ntotal == 20_000
    exact = AnnIndex(16, kind="flat")
    exact.add(v, np.arange(20_000) + 1000)
    q = v[np.random.default_rng(1).choice(20_000, 50, replace=False)]
    _, want = exact.search(q, 50)
    _, got = ivf.search(q, 50)
    recall = np.mean([len(set(a) & set(b)) / 50 for a, b in zip(got, want, strict=True)])
    assert recall > 0.95
    # one list only (nprobe 1): a sizeable share of the exact neighbours is missed, so the
    # figure above is the lists' doing
    one = AnnIndex(16, kind="ivf", expected=len(v), nprobe=1)
    one.add(v, np.arange(20_000) + 1000)
    _, got1 = one.search(q, 50)
    assert np.mean([len(set(a) & set(b)) / 50 for a, b in zip(got1, want, strict=True)]) < recall
    # through its array: the same index, the same answers
    again = AnnIndex.from_array(ivf.to_array(), 16, 20_000)
    assert again.kind == "ivf" and again.nprobe == 16
    np.testing.assert_array_equal(again.search(q, 50)[1], got)


def test_a_small_first_batch_gets_fewer_lists() -> None:
    v = _clustered(200)
    ivf = AnnIndex(16, kind="ivf", expected=1_000_000)
    ivf.add(v, np.arange(200))
    assert ivf._base.nlist == ivf_lists(200) == 5
    assert ivf.search(v[:1], 3)[1][0, 0] == 0
    with pytest.raises(ValueError, match="nothing to save"):
        AnnIndex(16, kind="ivf").to_array()


def test_hnsw_looks_at_k_candidates_when_k_exceeds_ef_search() -> None:
    """A recall channel asks HNSW for its quota plus the notes it excludes, often more than
    ``ef_search``: the search widens to ``k`` candidates instead of losing true neighbours."""
    rng = np.random.default_rng(0)
    v = rng.standard_normal((5_000, 16)).astype(np.float32)
    q = rng.standard_normal((20, 16)).astype(np.float32)
    _, truth = AnnIndex.of_rows(v, kind="flat").search(q, 200)
    hnsw = AnnIndex.of_rows(v, kind="hnsw", ef_search=16)
    _, got = hnsw.search(q, 200)
    recall = np.mean([np.isin(g, t).mean() for g, t in zip(got, truth, strict=True)])
    assert recall > 0.95, recall
    hnsw.set_ef_search(200)  # the same as asking for those candidates explicitly
    np.testing.assert_array_equal(hnsw.search(q, 200)[1], got)
    hnsw.set_ef_search(16)
    _, narrow = hnsw._base.search(q, 200)  # FAISS's own search at efSearch 16 loses neighbours
    assert np.mean([np.isin(g, t).mean() for g, t in zip(narrow, truth, strict=True)]) < recall - 0.1


def test_a_search_can_look_at_more_or_fewer_lists_than_the_index() -> None:
    """``search(..., nprobe=)`` sets the lists for that call only: every list gives the exact
    answer, one list misses neighbours, and the index keeps its own setting after."""
    v = _clustered(5_000)
    ivf = AnnIndex.of_rows(v, kind="ivf", nprobe=2)
    exact = AnnIndex.of_rows(v, kind="flat")
    q = v[:40]
    _, want = exact.search(q, 30)
    _, every = ivf.search(q, 30, nprobe=ivf._base.nlist)
    np.testing.assert_array_equal(every, want)
    _, own = ivf.search(q, 30)
    _, one = ivf.search(q, 30, nprobe=1)

    def hit(got: np.ndarray) -> float:
        return float(np.mean([len(set(a) & set(b)) for a, b in zip(got, want, strict=True)]))

    assert hit(one) < hit(own) < 30
    np.testing.assert_array_equal(ivf.search(q, 30)[1], own)  # the call did not change the index
    assert ivf._base.nprobe == 2
    with pytest.raises(ValueError, match="'nprobe' must be >= 1"):
        ivf.search(q, 5, nprobe=0)
    # other kinds ignore it
    np.testing.assert_array_equal(exact.search(q, 30, nprobe=1)[1], want)


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_from_array_reads_the_index_to_array_wrote(kind) -> None:
    """Read through a chunked callback (the whole array is not copied first): the same index,
    byte for byte, across chunk boundaries; a cut or damaged array is a clear error."""
    import faiss

    from notefeed.recall.ann import _read_index

    v = _clustered(3000)
    ann = AnnIndex(16, kind=kind, expected=len(v))
    ann.add(v, np.arange(3000) + 7)
    data = ann.to_array()
    for chunk in (7, 4096, 1 << 24):
        assert np.array_equal(faiss.serialize_index(_read_index(data, chunk)), data)
    again = AnnIndex.from_array(data, 16, 3000)
    assert again.kind == kind
    np.testing.assert_array_equal(again.search(v[:20], 10)[1], ann.search(v[:20], 10)[1])
    for bad in (data[: len(data) // 2], data[:3], np.zeros(0, np.uint8), np.full(64, 7, np.uint8)):
        with pytest.raises(ValueError, match="not a FAISS index"):
            AnnIndex.from_array(bad, 16, 3000)
