"""Commands of the search stage: ``notefeed search`` and ``notefeed bench search``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import typer

from notefeed.clierror import fail as _fail

__all__ = ["register"]


def _open_index(workspace: Path, rebuild: bool = False, config: object = None, sync: bool = False) -> tuple:
    """(dataset, pipeline) of WORKSPACE: its index in WORKSPACE/search/, built there when
    missing, unreadable, of another catalogue or ``rebuild`` (a fusion.json it held is kept);
    notes the store gained since it was written are added to it. ``sync``: copy the serving
    logs into the store first (:func:`~notefeed.models.sync.sync_first`)."""
    from rich.console import Console

    from notefeed.data.store import Workspace
    from notefeed.search import SearchError, SearchPipeline

    if not (workspace / "notefeed.duckdb").exists():
        _fail(f"--workspace: {workspace} holds no community (notefeed data import / sim generate first)")
    from notefeed.data.dataset import DataError

    if sync:
        from notefeed.models.sync import sync_first

        sync_first(workspace, Console(stderr=True).print, _fail)

    from notefeed.models.sync import EDITS_LOG

    try:
        with Workspace.open(workspace, create=False) as ws:
            ds = ws.load_dataset()
            stored_edits = int(ws.mark(EDITS_LOG) or 0)  # the note edits the store's rows hold
    except DataError as e:  # unreadable or locked by a writer
        _fail(f"--workspace: {e}")
    path = workspace / "search"
    pipe = None
    fresh_from: int | None = None  # items indexed from the store's rows here (edits up to stored_edits in them)
    if not rebuild and (path / "catalog.json").exists():
        try:
            pipe = SearchPipeline.load(path, config)  # type: ignore[arg-type]
        except SearchError as e:
            Console(stderr=True).print(f"rebuilding the index: {e}")
        if pipe is not None:
            ids = ds.notes["note_id"].astype(str).tolist()
            n = len(pipe)
            if pipe.note_ids[: len(ids)] != ids[:n]:  # another catalogue (a replaced workspace)
                Console(stderr=True).print(f"rebuilding the index: {path} indexes other notes than the store")
                pipe.close()
                pipe = None
            elif len(ids) > n:  # notes the store gained since (an import, a sync)
                pipe.add_notes(ds.notes.iloc[n:])
                fresh_from = n
                Console(stderr=True).print(f"indexed {len(ids) - n:,} notes added to the store since")
    if pipe is None:
        import shutil

        from notefeed.search.fusion import LearnedFusion

        kept = None  # a trained fusion outlives a rebuild of the index (as in serving)
        if (path / "fusion.json").exists():
            try:
                kept = LearnedFusion.load(path / "fusion.json")
            except SearchError as e:
                Console(stderr=True).print(f"dropping {e}")
        shutil.rmtree(path, ignore_errors=True)
        pipe = SearchPipeline.build(ds.notes, config, path=path)  # type: ignore[arg-type]
        pipe.edits_seq, fresh_from = stored_edits, 0
        if kept is not None:
            pipe.fusion = kept
        pipe.save()
    _logged_edits(workspace, pipe, fresh_from, stored_edits)
    return ds, pipe


def _logged_edits(workspace: Path, pipe: object, fresh_from: int | None, stored_edits: int) -> None:
    """Re-index the notes the note log has edits of past those the index holds (``edits_seq``),
    as serving does: with each edit's fields before and after. Items from ``fresh_from`` on
    were indexed from the store's rows just now, which hold the edits up to ``stored_edits``."""
    import pandas as pd

    from notefeed.models.sync import logged_edits

    for seq, note_id, before, after in logged_edits(workspace, pipe.edits_seq):  # type: ignore[attr-defined]
        i = pipe.note_index.get(note_id)  # type: ignore[attr-defined]
        if i is not None and not (fresh_from is not None and i >= fresh_from and seq <= stored_edits):
            pipe.update_notes(pd.DataFrame([{"note_id": note_id, **before}]),  # type: ignore[attr-defined]
                              pd.DataFrame([{"note_id": note_id, **after}]))
        pipe.edits_seq = max(pipe.edits_seq, seq)  # type: ignore[attr-defined]


@contextlib.contextmanager
def _index_lock(workspace: Path) -> Iterator[None]:
    """The lock of WORKSPACE/search (:func:`~notefeed.search.store.folder_lock`), waited for a
    minute (a server building the index holds it), else a one-line error."""
    from notefeed.search import SearchError
    from notefeed.search.store import folder_lock

    with contextlib.ExitStack() as held:
        try:
            held.enter_context(folder_lock(workspace / "search", timeout_s=60.0))
        except SearchError as e:
            _fail(f"--workspace: {e}")
        yield


def train_workspace_fusion(workspace: Path, min_clicks: int = 200, valid_share: float = 0.2, sampled: int = 0,
                           max_pages: int = 50_000, seed: int = 0) -> tuple:
    """(the :class:`~notefeed.search.clickfusion.ClickFusionReport`, whether ``fusion.json`` was
    saved): the learned fusion fitted from WORKSPACE's search log (the latest ``max_pages``
    searches) and installed in its index, under the index's lock (``search-train-fusion``)."""
    from notefeed.search.clickfusion import history_before, install, train_click_fusion
    from notefeed.search.querylog import SearchLog

    with _index_lock(workspace):
        ds, pipe = _open_index(workspace)
        try:
            log = SearchLog(workspace / "search_log.sqlite")
            try:
                pages = log.pages(limit=max_pages)
            finally:
                log.close()
            rep = train_click_fusion(pipe, pages, history_before(ds.select_events(), ds.user_index),
                                     min_clicked_pages=min_clicks, valid_share=valid_share, sampled=sampled,
                                     seed=seed)
            return rep, install(pipe, rep)
        finally:
            pipe.close()


def _log_verdict(workspace: Path, fusion: object, pages_needed: int) -> dict | None:
    """The interleaving verdict of ``fusion`` from WORKSPACE's search log (as serving reaches
    it, :func:`~notefeed.search.interleave.verdict_from_log`); None without a log."""
    from notefeed.search.interleave import verdict_from_log
    from notefeed.search.querylog import SearchLog

    logf = workspace / "search_log.sqlite"
    if not logf.exists():
        return None
    log = SearchLog(logf)
    try:
        return verdict_from_log(log, fusion, pages_needed)
    finally:
        log.close()


def fusion_due(workspace: Path, min_clicks: int = 200) -> str | None:
    """Why ``notefeed train`` should fit the search fusion now, or None. Due when the search log
    has ``min_clicks`` searches with a click and either there is no ``fusion.json`` (or it cannot
    be read), or the fusion there lost or tied its interleaving with RRF and the log has since
    doubled its searches with a click. Never while its interleaving is still counting (a new
    fusion would start the count again) nor when it won (it serves; ``search-train-fusion``
    replaces it by hand), nor for a fusion not trained from the log."""
    from notefeed.search import SearchConfig, SearchError
    from notefeed.search.fusion import LearnedFusion
    from notefeed.search.interleave import verdict_from_log
    from notefeed.search.querylog import SearchLog

    logf = workspace / "search_log.sqlite"
    if not logf.exists():
        return None
    log = SearchLog(logf)
    try:
        clicked = log.n_clicked_pages()
        if clicked < min_clicks:
            return None
        f = workspace / "search" / "fusion.json"
        if not f.exists():
            return f"{clicked} searches with a click in the search log and no fusion.json yet"
        try:
            fusion = LearnedFusion.load(f)
        except SearchError as e:
            return f"the fusion.json there cannot be read ({e})"
        before = (fusion.meta.get("counts") or {}).get("clicked_pages")
        if not isinstance(before, int) or clicked < 2 * before:
            return None
        verdict = verdict_from_log(log, fusion, SearchConfig().interleave_pages)["verdict"]
        if verdict not in ("rrf", "no difference"):
            return None
        return (f"its fusion.json ({before} searches with a click) did not win its interleaving ({verdict}); "
                f"the log has {clicked} now")
    finally:
        log.close()


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add this stage's commands to ``notefeed`` and ``notefeed bench``."""

    @app.command("search")
    def search(
        query: str = typer.Argument(..., help="the query text"),
        workspace: Path = typer.Option(..., "--workspace", help="workspace (index in WORKSPACE/search/)"),
        user: str | None = typer.Option(None, "--user", help="personalise for this user id"),
        n: int = typer.Option(10, "--n", min=1, max=1000, help="results"),
        rebuild: bool = typer.Option(False, "--rebuild", help="rebuild the index from the workspace first"),
        explain: bool = typer.Option(False, "--explain", help="print the query understanding and features"),
        sync: bool = typer.Option(True, "--sync/--no-sync", help="first copy into the store what `serve` logged "
                                  "since the last sync (published notes, events), as `notefeed train` does"),
    ) -> None:
        """Search the notes of WORKSPACE (the index is built there on first use; notes the store
        gained since are added to it)."""
        import json

        import numpy as np
        from rich.console import Console
        from rich.table import Table

        from notefeed.search import SearchError
        from notefeed.search.pipeline import small_creator_lookup

        with _index_lock(workspace):  # the one writer of WORKSPACE/search (serving workers too)
            ds, pipe = _open_index(workspace, rebuild, sync=sync)
            history = None
            if user is not None:
                u = ds.user_index.get(user)
                if u is None:
                    _fail(f"--user: unknown user {user!r}")
                pos = ds.select_events()
                history = pos["item"].to_numpy()[pos["user"].to_numpy() == u]
            if pipe.fusion is not None and pipe.config.fusion == "auto":  # the interleaving's verdict
                verdict = _log_verdict(workspace, pipe.fusion, pipe.config.interleave_pages)
                if verdict is not None:
                    pipe.fusion.meta["interleaving"] = verdict
            try:
                res = pipe.search(query, min(n, pipe.config.max_page), history=history, explain=explain,
                                  fusion=pipe.serving_fusion(),  # what serves (never an interleaved page)
                                  small_creator=small_creator_lookup(ds.item_is_small_creator))
            except SearchError as e:
                _fail(str(e).replace("q: ", "QUERY: ", 1).replace("n: ", "--n: ", 1))
                return
            finally:
                pipe.close()  # the verdict read from the log is not saved with the fusion
        pq = res.query
        con = Console()
        con.print(f"query: {pq.text!r} terms={pq.terms} corrections={pq.corrections} "
                  f"categories={[(c, round(p, 2)) for c, p in pq.categories]} rewrites={pq.rewrites} "
                  f"fusion={res.fusion}")
        t = Table()
        for col in ("#", "note_id", "category", "title", "small creator", "score"):
            t.add_column(col)
        notes = ds.notes
        small = res.small_creator if res.small_creator is not None else np.zeros(len(res.items), bool)
        for r, (i, s, sm) in enumerate(zip(res.items.tolist(), res.scores.tolist(), small.tolist(), strict=True), 1):
            row = notes.iloc[i] if i < len(notes) else None
            t.add_row(str(r), pipe.note_ids[i], "" if row is None else str(row["category"]),
                      "" if row is None else str(row["title"])[:60], "yes" if sm else "", f"{s:.4f}")
        con.print(t)
        if explain and res.trace is not None:
            con.print_json(json.dumps({**res.trace, "ms": res.ms}, default=str))

    @app.command("search-train-fusion")
    def search_train_fusion(
        workspace: Path = typer.Option(..., "--workspace", help="workspace (log WORKSPACE/search_log.sqlite, "
                                       "index WORKSPACE/search/)"),
        min_clicks: int = typer.Option(200, "--min-clicks", min=1, help="fewest searches with a click to train"),
        valid_share: float = typer.Option(0.2, "--valid-share", min=0.01, max=0.9,
                                          help="latest share of those searches kept for validation"),
        sampled: int = typer.Option(0, "--sampled", min=0, max=100,
                                    help="random unshown candidates per search added as negatives"),
        max_pages: int = typer.Option(50_000, "--max-pages", min=1, help="latest logged searches read"),
        seed: int = typer.Option(0, "--seed"),
        json_path: Path | None = typer.Option(None, "--json", help="write the training report here"),
    ) -> None:
        """Fit the learned fusion from WORKSPACE's search log (clicks) and save it as fusion.json
        in the index; `fusion: auto` serves it when it beat RRF on the latest searches' clicks, or
        once it wins the interleaving with RRF (see search-interleaving)."""
        import json

        from rich.console import Console

        logf = workspace / "search_log.sqlite"
        if not logf.exists():
            _fail(f"--workspace: {logf} does not exist (no search was served or logged there): search stays on RRF")
        rep, saved = train_workspace_fusion(workspace, min_clicks=min_clicks, valid_share=valid_share,
                                            sampled=sampled, max_pages=max_pages, seed=seed)
        con = Console()
        con.print(("fusion.json saved: " if saved else "no fusion trained: ") + rep.reason, highlight=False)
        if rep.valid:
            for k, m in rep.valid.items():
                con.print(f"  {k:8s} click MRR {m['click_mrr']:.4f}  click NDCG@10 {m['click_ndcg@10']:.4f}",
                          highlight=False)
        if json_path is not None:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps({**rep.to_json(), "command": "notefeed search-train-fusion "
                                             f"--workspace {workspace} --min-clicks {min_clicks} --valid-share "
                                             f"{valid_share} --sampled {sampled} --max-pages {max_pages} "
                                             f"--seed {seed}"}, indent=2), encoding="utf-8")
        if not saved:
            raise typer.Exit(1)

    @app.command("search-interleaving")
    def search_interleaving(
        workspace: Path = typer.Option(..., "--workspace", help="workspace (WORKSPACE/search/fusion.json and "
                                       "WORKSPACE/search_log.sqlite)"),
        pages: int | None = typer.Option(None, "--pages", min=1, help="interleaved searches with a click the test "
                                         "waits for (default: the search config's interleave_pages)"),
        json_path: Path | None = typer.Option(None, "--json", help="write the verdict here"),
    ) -> None:
        """Where the interleaving of RRF and the trained fusion.json stands in WORKSPACE's search
        log: the verdict `fusion: auto` serves by (learned / rrf / no difference / collecting)."""
        import json

        from notefeed.search import SearchConfig, SearchError
        from notefeed.search.fusion import LearnedFusion

        f = workspace / "search" / "fusion.json"
        if not f.exists():
            _fail(f"--workspace: {f} does not exist (notefeed search-train-fusion writes it): nothing to interleave")
        try:
            fusion = LearnedFusion.load(f)
        except SearchError as e:
            _fail(f"--workspace: {e}")
        v = _log_verdict(workspace, fusion, pages or SearchConfig().interleave_pages)
        if v is None:
            _fail(f"--workspace: {workspace / 'search_log.sqlite'} does not exist (no search was served or logged there)")
        print(f"interleaving of RRF and {f}: {v['verdict']} ({v['pages']} of {v['pages_needed']} searches with a "
              f"click; learned won {v['learned_wins']}, RRF {v['rrf_wins']}, ties {v['ties']}; sign test "
              f"p = {v['p_value']:.3g})")
        if json_path is not None:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps({**v, "command": f"notefeed search-interleaving --workspace {workspace}"
                                             + (f" --pages {pages}" if pages else "")}, indent=2), encoding="utf-8")

    @app.command("search-fusion-study")
    def search_fusion_study(
        dataset: str = typer.Option("sim-demo", "--dataset", help="sim-demo, sim-tiny, ..."),
        seed: int = typer.Option(0, "--seed"),
        queries: int = typer.Option(3500, "--queries", min=100, help="simulated queries (test + log)"),
        test_queries: int = typer.Option(500, "--test-queries", min=10),
        sampled: int = typer.Option(0, "--sampled", min=0, max=100,
                                    help="random unshown candidates per search added as negatives"),
        interleave: int = typer.Option(0, "--interleave", min=0, max=1_000_000,
                                       help="then this many searches interleaving RRF with each fusion (team draft): "
                                       "the verdict serving's auto would reach"),
        json_path: Path | None = typer.Option(None, "--json", help="write the result JSON here"),
    ) -> None:
        """Simulated clicks on served search pages -> the learned fusion trained from them, vs RRF
        on the held-out queries' graded relevance (notefeed/search/clickstudy.py); with
        --interleave, also the interleaving verdict on further simulated searches."""
        from notefeed.search.clickstudy import click_fusion_study

        if test_queries >= queries:
            _fail("--test-queries: must be fewer than --queries")
        res = click_fusion_study(dataset, seed, queries, test_queries, sampled=sampled, interleave=interleave)
        res["command"] = (f"notefeed search-fusion-study --dataset {dataset} --seed {seed} --queries {queries} "
                          f"--test-queries {test_queries} --sampled {sampled}"
                          + (f" --interleave {interleave}" if interleave else ""))
        r = res["results"]
        print(f"{res['log_searches']} logged searches, {res['log_searches_with_click']} with a click, "
              f"{res['log_clicks']} clicks; {res['test_queries']} test queries")
        for name in ("rrf+personal", "learned-from-clicks+personal", "learned-from-grades+personal"):
            m = r[name].get("metrics", {})
            print(f"  {name:30s} " + "  ".join(f"{k} NDCG@10 {v['ndcg@10']:.4f}" for k, v in m.items()))
        for e in r["learning_curve"]:
            d = e.get("ndcg@10_minus_rrf")
            print(f"  clicks from {e['log_searches']:5d} searches: "
                  + (f"NDCG@10 {e['metrics']['all']['ndcg@10']:.4f}, minus RRF {d['mean']:+.4f} "
                     f"[{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}]; {e['report']['reason']}" if d else
                     e["report"]["reason"]))
        for name in ("learned-from-clicks+personal", "learned-from-grades+personal"):
            il = r[name].get("interleaving")
            if il:
                v = il["verdict"]
                print(f"  interleaved with RRF, {name}: {v['verdict']} (first {v['pages']} searches with a click: "
                      f"learned won {v['learned_wins']}, RRF {v['rrf_wins']}, ties {v['ties']}, p = {v['p_value']:.3g})")
        if json_path is not None:
            from notefeed.eval.timing import machine_info, write_json

            write_json(json_path, {**res, "machine": machine_info()})

    @app.command("search-images")
    def search_images(
        workspace: Path = typer.Option(..., "--workspace", help="workspace (image index in WORKSPACE/images/)"),
        vectors: Path | None = typer.Option(None, "--vectors", help="precomputed vectors: safetensors with a "
                                            "'vectors' (m, dim) tensor"),
        ids: Path | None = typer.Option(None, "--ids", help="with --vectors: JSON list of the m rows' note ids"),
        image_root: Path | None = typer.Option(None, "--image-root", help="encode the notes' image files "
                                               "(their media paths, relative to this folder)"),
        model: str | None = typer.Option(None, "--model", help="with --image-root: OpenCLIP architecture"),
        checkpoint: Path | None = typer.Option(None, "--checkpoint", help="with --image-root: local weights file"),
    ) -> None:
        """Build the image index that POST /v1/search/image searches (from vectors or image files)."""
        import json

        import numpy as np

        from notefeed.search import SearchError
        from notefeed.search.image import ImageIndex, encode_note_images, load_encoder

        out = workspace / "images"
        try:
            if vectors is not None:
                if ids is None or image_root is not None:
                    _fail("--vectors: give --ids with it, and no --image-root")
                from safetensors import safe_open

                try:
                    with safe_open(str(vectors), framework="numpy") as f:
                        v = f.get_tensor("vectors")
                    note_ids = json.loads(Path(ids).read_text(encoding="utf-8"))  # type: ignore[arg-type]
                except Exception as e:  # unreadable file of either kind
                    _fail(f"--vectors/--ids: cannot read ({e})")
                if not isinstance(note_ids, list) or v.ndim != 2:
                    _fail("--ids must be a JSON list and --vectors a 2-d 'vectors' tensor")
                idx = ImageIndex(int(v.shape[1]), None, expected=len(note_ids))
                idx.add([str(n) for n in note_ids], np.asarray(v, np.float32))
                missing: list[str] = []
            else:
                if image_root is None or model is None or checkpoint is None:
                    _fail("give --vectors and --ids, or --image-root, --model and --checkpoint")
                from notefeed.data.store import Workspace

                if not (workspace / "notefeed.duckdb").exists():
                    _fail(f"--workspace: {workspace} holds no community")
                with Workspace.open(workspace, create=False) as ws:
                    notes = ws.load_dataset().notes
                if "media" not in notes.columns:
                    _fail("the workspace's notes have no 'media' (image paths) column")
                spec = {"kind": "open_clip", "model_name": model, "checkpoint": str(Path(checkpoint).resolve())}  # type: ignore[arg-type]
                idx, missing = encode_note_images(notes["note_id"].astype(str).tolist(), notes["media"].tolist(),
                                                  image_root, load_encoder(spec), spec)  # type: ignore[arg-type]
        except SearchError as e:
            _fail(str(e))
        idx.save(out)
        print(f"image index: {len(idx)} images of {idx.n_notes} notes, dim {idx.dim} -> {out}"
              + (f" ({len(missing)} image files missing)" if missing else ""))

    @bench.command("search")
    def bench_search_cmd(
        notes: int = typer.Option(100_000, "--notes", min=100, help="simulated notes to index"),
        queries: int = typer.Option(500, "--queries", min=10),
        seed: int = typer.Option(0, "--seed"),
        workers: int = typer.Option(1, "--workers", min=1, max=64, help="processes segmenting Chinese text"),
        index_threads: int = typer.Option(1, "--index-threads", min=1, max=16, help="tantivy indexing threads"),
        hybrid: bool = typer.Option(True, "--hybrid/--bm25-only", help="also build and query the full pipeline"),
        dense_ann: str = typer.Option("ivf", "--dense-ann", help="approximate dense index(es) of the full pipeline, "
                                      "comma-separated, each built and measured in turn: ivf, hnsw"),
        in_process: bool = typer.Option(False, "--in-process", help="also build the first of them with the dense "
                                        "vectors computed in this process (no worker process), for comparison"),
        json_path: Path | None = typer.Option(None, "--json", help="write the result JSON here"),
    ) -> None:
        """Index build notes/s and query p50/p99: BM25 alone vs the full hybrid pipeline."""
        from rich.console import Console
        from rich.table import Table

        from notefeed.eval.timing import machine_info, write_json
        from notefeed.recall.ann import APPROX_KINDS
        from notefeed.search.bench import BENCH_CORPORA, bench_search

        anns = [a.strip() for a in dense_ann.split(",") if a.strip()]
        bad = [a for a in anns if a not in APPROX_KINDS]
        if bad or not anns:
            _fail(f"--dense-ann: expected ivf and/or hnsw (comma-separated), got {dense_ann!r}")
        corpus = BENCH_CORPORA.get("sim")(notes, queries, seed)  # the simulator's (notefeed.sim.search_data)
        res = bench_search(corpus, seed, workers=workers, hybrid=hybrid, index_threads=index_threads,
                           dense_ann=anns, in_process=in_process)
        t = Table(title=f"search at {notes:,} notes, {queries} queries")
        for col in ("pipeline", "build s", "notes/s", "notes/cpu-s", "p50 ms", "p99 ms", "cpu p99 ms",
                    "dense recall"):
            t.add_column(col, justify="right")
        for k in [k for k in res if k == "bm25" or k.startswith("hybrid")]:
            r = res[k]
            rec = r.get("dense_recall_at_k")  # type: ignore[union-attr]
            t.add_row(k, f"{r['build_s']:.1f}", f"{r['notes_per_s']:,.0f}", f"{r['notes_per_cpu_s']:,.0f}",  # type: ignore[index]
                      f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", f"{r['cpu_p99_ms']:.2f}",  # type: ignore[index]
                      "-" if rec is None else f"{rec:.4f}")
        Console().print(t)
        if json_path is not None:
            write_json(json_path, {"bench": "search", "result": res, "machine": machine_info(),
                                   "command": f"notefeed bench search --notes {notes} --queries {queries} --seed {seed}"
                                              f" --workers {workers} --index-threads {index_threads}"
                                              + (f" --dense-ann {','.join(anns)}" + (" --in-process" if in_process else "")
                                                 if hybrid else " --bm25-only")})
