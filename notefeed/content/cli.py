"""Commands of the content stage: ``notefeed content ...`` and ``notefeed bench content``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import typer

__all__ = ["register"]


def _note_texts(ds, with_tags: bool = True) -> list[str]:  # type: ignore[no-untyped-def]
    from notefeed.content.evaluate import _texts

    return _texts(ds, with_tags)


def _load(name: str, seed: int = 0, quick: bool = False):  # type: ignore[no-untyped-def]
    """The dataset ``--dataset`` names; an unknown name or missing files: one line, exit 2."""
    from notefeed.content.evaluate import _load as load
    from notefeed.registry import error_text

    try:
        return load(name, seed, quick=quick)
    except (KeyError, ValueError, FileNotFoundError) as e:
        typer.echo(f"error: --dataset: {error_text(e)}", err=True)
        raise typer.Exit(2) from None


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add this stage's commands to ``notefeed`` and ``notefeed bench``."""
    content = typer.Typer(help="Content understanding: text encoders, CB2CF, tags for new notes.",
                          no_args_is_help=True)
    app.add_typer(content, name="content")

    @content.command("train")
    def train(
        dataset: str = typer.Option(..., help="dataset name (load_dataset), 'sim' or 'synthetic'"),
        out: Path = typer.Option(..., help="folder for encoder/, cb2cf/ and tags/ artifacts"),
        dim: int = typer.Option(64, min=1, max=4096, help="text vector dimension"),
        epochs: int = typer.Option(8, min=1, max=1000, help="CB2CF epochs"),
        seed: int = typer.Option(0),
        quick: bool = typer.Option(False, "--quick", help="a small subsample (smoke runs)"),
    ) -> None:
        """Fit the text encoder, CB2CF and tag centroids on a dataset's notes and interactions."""
        from notefeed.content.cb2cf import CB2CF, CB2CFConfig
        from notefeed.content.tags import TagPredictor
        from notefeed.content.text import TextEncoder

        ds = _load(dataset, seed, quick)
        texts = _note_texts(ds)
        typer.echo(f"{ds.name}: {ds.n_items} notes, {len(ds.events)} events")
        enc = TextEncoder(dim=dim, seed=seed).fit(texts)
        vecs = enc.transform(texts)
        enc.save(out / "encoder")
        model = CB2CF(CB2CFConfig(epochs=epochs, seed=seed)).fit(vecs, ds.interactions(), progress=True)
        model.save(out / "cb2cf")
        TagPredictor(k=3, fill_popular=True).fit(vecs, ds.notes["tags"].tolist()).save(out / "tags")
        typer.echo(f"saved to {out} (final CB2CF loss {model.losses_[-1]:.4f})")

    @content.command("similar")
    def similar(
        model_dir: Path = typer.Argument(..., help="folder written by 'notefeed content train'"),
        text: str = typer.Option(..., help="a new note's title + text"),
        k: int = typer.Option(5, min=1, max=10_000),
    ) -> None:
        """CB2CF neighbours (catalogue indices) and predicted tags of a new note from its text."""
        from notefeed.content.cb2cf import CB2CF, topk_cosine
        from notefeed.content.tags import TagPredictor
        from notefeed.content.text import TextEncoder

        enc = TextEncoder.load(model_dir / "encoder")
        model = CB2CF.load(model_dir / "cb2cf")
        v = enc.transform([text])
        z = model.transform(v)
        idx, sc = topk_cosine(z, model.item_vectors_, k)
        tags = TagPredictor.load(model_dir / "tags").predict(v)[0]
        typer.echo(json.dumps({"neighbours": idx[0].tolist(), "scores": np.round(sc[0], 4).tolist(),
                               "tags": tags}, ensure_ascii=False))

    @bench.command("content")
    def bench_content(
        json_path: Path = typer.Option(None, "--json", help="write the figures here"),
        n_notes: int = typer.Option(2000, min=1, help="synthetic catalogue size"),
        repeats: int = typer.Option(5, min=1, max=1000),
        seed: int = typer.Option(0),
    ) -> None:
        """Text-encoder throughput (ours vs sklearn TfidfVectorizer+SVD) and CB2CF new-note latency."""
        import torch
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        from notefeed.content.cb2cf import CB2CF
        from notefeed.content.synthetic import synthetic_catalogue
        from notefeed.content.text import TextEncoder

        ds, _, _ = synthetic_catalogue(n_items=n_notes, n_users=max(200, n_notes // 2), seed=seed)
        texts = _note_texts(ds, with_tags=False)
        enc = TextEncoder(dim=64, seed=seed).fit(texts)
        tf = TfidfVectorizer(sublinear_tf=True).fit(texts)
        svd = TruncatedSVD(64, random_state=seed).fit(tf.transform(texts))

        def med(fn) -> tuple[float, float]:  # type: ignore[no-untyped-def]
            ts = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t0)
            return float(np.median(ts)), float(np.percentile(ts, 99))

        ours, ours_p99 = med(lambda: enc.transform(texts))
        base, base_p99 = med(lambda: svd.transform(tf.transform(texts)))
        vecs = enc.transform(texts)
        model = CB2CF(epochs=2, seed=seed).fit(vecs, ds.interactions())
        lat = []  # one new note end to end: its text -> encoder -> CB2CF vector
        with torch.no_grad():
            for i in range(max(50, repeats)):
                t0 = time.perf_counter()
                model.transform(enc.transform([texts[i % len(texts)]]))
                lat.append(time.perf_counter() - t0)
        out = {
            "n_notes": n_notes,
            "encode_texts_per_s": len(texts) / ours,
            "encode_p99_s": ours_p99,
            "baseline_sklearn_tfidf_svd_texts_per_s": len(texts) / base,
            "baseline_p99_s": base_p99,
            "ratio_ours_over_baseline_time": ours / base,
            "cb2cf_new_note_latency_ms_median": 1000 * float(np.median(lat)),
            "cb2cf_new_note_latency_ms_p99": 1000 * float(np.percentile(lat, 99)),
        }
        typer.echo(json.dumps(out, indent=2))
        if json_path is not None:
            json_path.write_text(json.dumps(out, indent=2), encoding="utf-8")
