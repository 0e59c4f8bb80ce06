"""The simulator's data for the search stage (notefeed/sim/search_data.py): the registered
query sets and the search bench's corpus."""

from __future__ import annotations

import numpy as np
import pytest

from notefeed.search.bench import bench_search
from notefeed.search.evaluate import load_queries
from notefeed.search.queries import QUERY_SETS
from notefeed.sim.search_data import SIM_QUERY_SETS, bench_corpus, sim_queries


def test_query_sets_registered_and_graded(tiny, tiny_history) -> None:  # type: ignore[no-untyped-def]
    assert set(SIM_QUERY_SETS) <= set(QUERY_SETS.names())
    qs, rel_min = load_queries("sim-tiny", 0, True, 20)
    assert rel_min == 2 and len(qs) == 20 and qs.query_log is not None
    direct = sim_queries(tiny, tiny_history, 20, 0)
    assert direct.texts == qs.texts and direct.relevance == qs.relevance  # the set is sim_queries on sim-tiny
    assert all(set(r.values()) <= {1, 2, 3} for r in qs.relevance)
    with pytest.raises(ValueError, match="unknown dataset"):
        load_queries("sim-nowhere", 0, True)


def test_bench_corpus_and_bm25_bench() -> None:
    corpus = bench_corpus(300, 12, seed=0)
    again = bench_corpus(300, 12, seed=0)
    assert len(corpus.notes) == 300 and len(corpus.queries) == 12 and corpus.queries == again.queries
    assert 0 <= corpus.zh_notes <= 1 and isinstance(corpus.rng, np.random.Generator)
    res = bench_search(corpus, 0, hybrid=False)
    assert (res["notes"], res["queries"]) == (300, 12) and "hybrid+personal" not in res
    assert res["bm25"]["p50_ms"] >= 0  # type: ignore[index]


def test_bench_search_cli(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from typer.testing import CliRunner

    from notefeed.cli import app

    out = tmp_path / "bench.json"
    res = CliRunner().invoke(app, ["bench", "search", "--notes", "300", "--queries", "12", "--bm25-only",
                                   "--json", str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert doc["result"]["notes"] == 300 and doc["result"]["queries"] == 12 and "bm25" in doc["result"]


def test_bench_search_side_by_side_dense_indexes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from typer.testing import CliRunner

    from notefeed.cli import app

    out = tmp_path / "bench.json"
    res = CliRunner().invoke(app, ["bench", "search", "--notes", "300", "--queries", "12", "--dense-ann", "ivf,hnsw",
                                   "--in-process", "--json", str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    r = doc["result"]
    assert {"bm25", "hybrid+personal", "hybrid+personal (hnsw)", "hybrid+personal (in process)"} <= set(r)
    for k in ("hybrid+personal", "hybrid+personal (hnsw)", "hybrid+personal (in process)"):  # exact: all recalled
        assert r[k]["dense_index"] == "flat" and r[k]["dense_recall_at_k"] == 1.0 and r[k]["dense_k"] == 200
    assert doc["command"].endswith("--dense-ann ivf,hnsw --in-process")
    bad = CliRunner().invoke(app, ["bench", "search", "--notes", "300", "--dense-ann", "lsh"])
    assert bad.exit_code != 0 and "--dense-ann" in bad.output
