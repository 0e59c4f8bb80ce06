"""The eval stage on tiny data, graded metrics, and the CLI end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import notefeed.sim.search_data  # noqa: F401  (registers the sim* query sets)
from notefeed.cli import app
from notefeed.search.evaluate import METHODS, evaluate_search, graded_metrics


def test_graded_metrics() -> None:
    rel = [{1: 2, 2: 1}]
    m = graded_metrics([np.array([1, 2, 3])], rel, rel_min=1)
    assert m == {"mrr@10": 1.0, "ndcg@10": 1.0, "recall@100": 1.0}
    m = graded_metrics([np.array([3, 2, 1])], rel, rel_min=2)
    assert m["mrr@10"] == 1 / 3 and 0 < m["ndcg@10"] < 1 and m["recall@100"] == 1.0
    assert graded_metrics([np.array([9])], rel)["ndcg@10"] == 0.0


@pytest.mark.slow
def test_eval_stage_rows_on_the_tiny_simulator() -> None:
    rows = evaluate_search("sim-tiny", seed=0, quick=True, n_queries=30)
    assert {r["method"] for r in rows} == set(METHODS)
    for r in rows:
        assert 0 <= r["ndcg@10"] <= 1 and 0 <= r["mrr@10"] <= 1 and 0 <= r["recall@100"] <= 1
    by = {(r["method"], r["queries"]): r for r in rows}
    # alias queries find nothing without rewriting, and something with it
    assert by[("bm25", "reformulated")]["recall@100"] == 0.0
    assert by[("hybrid-learned+personal+rewrite", "reformulated")]["recall@100"] > 0.3


@pytest.mark.slow
def test_cli_search(tmp_path: Path) -> None:
    r = CliRunner()
    ws = tmp_path / "ws"
    assert r.invoke(app, ["sim", "generate", "--preset", "tiny", "--workspace", str(ws)]).exit_code == 0
    from notefeed.data.store import Workspace

    with Workspace.open(ws, create=False) as w:
        title = w.load_dataset().notes["title"].iat[0]
    word = title.split()[0]
    out = r.invoke(app, ["search", word, "--workspace", str(ws), "--n", "3"])
    assert out.exit_code == 0, out.output
    assert word in out.output and "1 │ n" in out.output and (ws / "search" / "catalog.json").exists()
    out = r.invoke(app, ["search", "\x01", "--workspace", str(ws)])
    assert out.exit_code == 2 and "QUERY" in out.output
    out = r.invoke(app, ["search", "x", "--workspace", str(tmp_path / "none")])
    assert out.exit_code == 2 and "--workspace" in out.output


def test_seed_summary_means_and_intervals() -> None:
    from notefeed.eval.metrics import t_half_width
    from notefeed.search.evaluate import summarize_seeds

    rows = [{"dataset": "d", "method": m, "queries": "all", "n_queries": 5 + s, "seed": s, "mrr@10": 0.5,
             "ndcg@10": v, "recall@100": 0.9, "ndcg@10_vs_bm25": v / b}
            for s, (v, b) in enumerate([(0.6, 0.5), (0.8, 0.5), (0.7, 0.7)]) for m in ("bm25", "learned")]
    out = {r["method"]: r for r in summarize_seeds(rows)}
    r = out["learned"]
    assert r["seeds"] == [0, 1, 2] and r["ndcg@10"] == pytest.approx(0.7)
    assert r["ndcg@10_ci95_seeds"] == pytest.approx(t_half_width([0.6, 0.8, 0.7]))
    # the ratio is averaged per seed (to that seed's BM25), not a ratio of means
    assert r["ndcg@10_vs_bm25"] == pytest.approx((1.2 + 1.6 + 1.0) / 3)
    assert r["ndcg@10_vs_bm25_per_seed"] == pytest.approx([1.2, 1.6, 1.0])
    assert r["recall@100_ci95_seeds"] == 0.0 and "summary" in r and r["n_queries_per_seed"] == [5, 6, 7]


@pytest.mark.slow
def test_cli_search_eval_over_seeds(tmp_path: Path) -> None:
    import json

    out = tmp_path / "eval.json"
    res = CliRunner().invoke(app, ["eval", "--stage", "search", "--dataset", "sim-tiny", "--quick", "--seeds", "0,1",
                                   "--models", "bm25,hybrid-learned+personal", "--json", str(out)])
    assert res.exit_code == 0, res.output
    rows = json.loads(out.read_text())["rows"]
    runs = [r for r in rows if "summary" not in r]
    summary = {(r["method"], r["queries"]): r for r in rows if "summary" in r}
    assert {r["seed"] for r in runs} == {0, 1} and {r["method"] for r in runs} == {"bm25", "hybrid-learned+personal"}
    s = summary[("hybrid-learned+personal", "all")]
    per = [r["ndcg@10"] for r in sorted(runs, key=lambda r: r["seed"])
           if (r["method"], r["queries"]) == ("hybrid-learned+personal", "all")]
    assert s["ndcg@10_per_seed"] == per and s["ndcg@10"] == pytest.approx(sum(per) / 2)
