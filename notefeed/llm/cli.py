"""``notefeed llm embed | interests | titles | serve``: batch jobs over a workspace, and an OpenAI-style server.

Everything lands in ``WORKSPACE/llm/``: ``model/`` (the built-in model), ``notellm/<version>/``
(note vectors) with ``notellm/current.json``, ``interests.jsonl``, ``titles.jsonl``. The JSONL
jobs are resumable: a rerun skips the users / notes already written (``--restart`` redoes them).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from notefeed.clierror import fail as _fail
from notefeed.llm.base import TRAIN_BUDGET_S

__all__ = ["register"]


def _dataset(workspace: Path):
    from notefeed.data.store import Workspace

    if not (workspace / "notefeed.duckdb").exists():
        _fail(f"--workspace: {workspace} holds no community (notefeed data import / sim generate first)")
    with Workspace.open(workspace, create=False) as ws:
        return ws.load_dataset()


def _backend(workspace: Path, spec: str | None, device: str):
    from notefeed.llm.base import LLMError, open_backend
    from notefeed.llm.builtin import BuiltinLM

    try:
        if spec:
            return open_backend(spec)
        if not (workspace / "llm" / "model" / "config.json").exists():
            _fail(f"{workspace}/llm/model: no built-in model yet (run notefeed llm embed first) or give --backend")
        return BuiltinLM.load(workspace / "llm" / "model").to(device)
    except LLMError as e:
        _fail(str(e))


def _done_ids(path: Path, key: str, restart: bool) -> set[str]:
    if restart or not path.exists():
        path.unlink(missing_ok=True)
        return set()
    out = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.add(str(json.loads(line)[key]))
        except (ValueError, KeyError):
            continue  # a line cut by an interrupted run is redone
    return out


def register(app: typer.Typer, bench: typer.Typer) -> None:
    llm = typer.Typer(help="Language models: note embeddings, interests, titles (notefeed.llm).", no_args_is_help=True)
    app.add_typer(llm, name="llm")

    @llm.command("embed")
    def embed(
        workspace: Path = typer.Option(..., "--workspace"),
        retrain: bool = typer.Option(False, "--retrain", help="train again even if WORKSPACE/llm/model exists"),
        epochs: int = typer.Option(10, "--epochs", min=1, help="planned epochs (the time cap usually ends first)"),
        max_time_s: float = typer.Option(TRAIN_BUDGET_S, "--max-time-s", min=1.0,
                                         help="training cap: CPU seconds on the CPU, wall seconds on a GPU; "
                                              "the learning rate is annealed to it"),
        device: str = typer.Option("cpu", "--device", help="cpu or cuda"),
        json_out: Path | None = typer.Option(None, "--json", help="write the training info, the model config "
                                             "and wall / CPU seconds per phase here"),
        sync: bool = typer.Option(True, "--sync/--no-sync", help="first copy into the store what `serve` logged "
                                  "since the last sync (published notes, events), as `notefeed train` does"),
    ) -> None:
        """Train the built-in model on the notes and co-occurrence pairs (resumes from a trained
        model unless --retrain), embed every note, store the vectors under a version."""
        import os
        import time

        from notefeed.eval.timing import phase
        from notefeed.llm.builtin import BuiltinConfig, BuiltinLM
        from notefeed.llm.corpus import NoteCorpus
        from notefeed.llm.notellm import NoteLLMChannel
        from notefeed.llm.pairs import mine_pairs
        from notefeed.llm.train import train_builtin
        from notefeed.recall._common import positive_log

        t0, c0 = time.perf_counter(), time.process_time()
        phases: dict[str, dict[str, float]] = {}
        with phase(phases, "load", 3):
            if sync:
                from notefeed.models.sync import sync_first

                sync_first(workspace, typer.echo, _fail)
            ds = _dataset(workspace)
            corpus = NoteCorpus.from_dataset(ds)
        mdir = workspace / "llm" / "model"
        trained = not ((mdir / "config.json").exists() and not retrain)
        with phase(phases, "train" if trained else "load_model", 3):
            if not trained:
                lm = BuiltinLM.load(mdir)
                typer.echo(f"using the trained model in {mdir} (--retrain to train again)")
            else:
                log = positive_log(ds)
                pairs, _ = mine_pairs(log["user"].to_numpy(), log["item"].to_numpy(), log["ts"].to_numpy(),
                                      ds.n_items)
                typer.echo(f"training on {len(corpus)} notes, {len(pairs)} co-occurrence pairs ({device})")
                lm = train_builtin(corpus, pairs, BuiltinConfig(epochs=epochs, max_time_s=max_time_s, device=device),
                                   progress=True)
                lm.save(mdir)
                typer.echo(f"trained: {json.dumps(lm.info)}")
        with phase(phases, "embed", 3):
            ch = NoteLLMChannel()
            ch.lm = lm.to(device)
            ch.set_vectors(lm.embed(corpus.texts()))
            ch.lm = lm.to("cpu")
            out = ch.save(workspace / "llm" / "notellm" / str(ch.version))
            (workspace / "llm" / "notellm" / "current.json").write_text(json.dumps({"version": ch.version}))
            typer.echo(f"{len(corpus)} note vectors, version {ch.version}: {out}")
        if json_out is not None:
            import dataclasses

            info = {"command": "notefeed llm embed", "workspace": str(workspace), "retrain": retrain,
                    "notes": len(corpus), "version": ch.version, "model_info": lm.info,
                    "config": dataclasses.asdict(lm.config) if dataclasses.is_dataclass(lm.config) else None,
                    "phases": phases, "total_wall_s": round(time.perf_counter() - t0, 3),
                    "total_cpu_s": round(time.process_time() - c0, 3), "load_avg_1_5_15m": list(os.getloadavg())}
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(json.dumps(info, indent=2, default=str))
            typer.echo(f"wrote {json_out}")

    @llm.command("interests")
    def interests(
        workspace: Path = typer.Option(..., "--workspace"),
        backend: str | None = typer.Option(None, "--backend", help="builtin:PATH, local:PATH or http(s) URL"),
        k: int = typer.Option(5, "--k", min=1, max=50),
        recent: int = typer.Option(20, "--recent", min=1),
        restart: bool = typer.Option(False, "--restart"),
        device: str = typer.Option("cpu", "--device"),
    ) -> None:
        """Infer each user's interest tags from their recent notes -> WORKSPACE/llm/interests.jsonl."""
        from tqdm.auto import tqdm

        from notefeed.llm.corpus import NoteCorpus
        from notefeed.llm.interest import infer_interests
        from notefeed.recall._common import positive_log, user_histories

        ds = _dataset(workspace)
        lm = _backend(workspace, backend, device)
        texts, tags = NoteCorpus.from_dataset(ds).texts(with_tags=False), list(ds.notes["tags"])
        hist = user_histories(positive_log(ds), ds.n_users, recent)
        path = workspace / "llm" / "interests.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        done = _done_ids(path, "user_id", restart)
        users = [u for u in range(ds.n_users) if str(ds.users["user_id"].iat[u]) not in done]
        with path.open("a", encoding="utf-8") as f:
            for lo in tqdm(range(0, len(users), 64), desc="interests", unit="batch"):
                us = users[lo : lo + 64]
                got = infer_interests(lm, [[texts[i] for i in hist[u]] for u in us], k,
                                      history_tags=[[t for i in hist[u] for t in tags[i]] for u in us])
                for u, ints in zip(us, got, strict=True):
                    f.write(json.dumps({"user_id": str(ds.users["user_id"].iat[u]),
                                        "interests": [vars(x) for x in ints]}, ensure_ascii=False) + "\n")
                f.flush()
        typer.echo(f"{len(users)} users written to {path} ({len(done)} already there)")

    @llm.command("titles")
    def titles(
        workspace: Path = typer.Option(..., "--workspace"),
        backend: str | None = typer.Option(None, "--backend"),
        n: int = typer.Option(3, "--n", min=1, max=10),
        limit: int | None = typer.Option(None, "--limit", min=1, help="first N notes only"),
        restart: bool = typer.Option(False, "--restart"),
        device: str = typer.Option("cpu", "--device"),
    ) -> None:
        """Title suggestions for each note body -> WORKSPACE/llm/titles.jsonl."""
        from tqdm.auto import tqdm

        from notefeed.llm.tasks import suggest_titles

        ds = _dataset(workspace)
        lm = _backend(workspace, backend, device)
        path = workspace / "llm" / "titles.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        done = _done_ids(path, "note_id", restart)
        notes = ds.notes.head(limit) if limit else ds.notes
        todo = [(str(a), str(b)) for a, b in zip(notes["note_id"], notes["text"], strict=True) if str(a) not in done]
        with path.open("a", encoding="utf-8") as f:
            for nid, body in tqdm(todo, desc="titles", unit="note"):
                if body.strip():
                    f.write(json.dumps({"note_id": nid, "titles": suggest_titles(lm, body, n)}, ensure_ascii=False) + "\n")
        typer.echo(f"{len(todo)} notes written to {path}")

    @llm.command("serve")
    def serve(
        model: Path = typer.Option(..., "--model", help="a built-in model folder (WORKSPACE/llm/model)"),
        host: str = typer.Option("127.0.0.1", "--host"),
        port: int = typer.Option(8100, "--port", min=1, max=65535),
    ) -> None:
        """Serve a built-in model over the OpenAI protocol (/v1/embeddings, /v1/chat/completions, ...)."""
        import uvicorn

        from notefeed.llm.server import create_openai_app

        lm = _backend(model.parent.parent, f"builtin:{model}", "cpu")
        uvicorn.run(create_openai_app(lm), host=host, port=port)
