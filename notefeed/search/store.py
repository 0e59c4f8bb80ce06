"""How a :class:`~notefeed.search.pipeline.SearchPipeline` is laid out on disk (one folder):

- ``lexical/``: tantivy's own index files + ``vocab.json`` (document frequencies);
- ``dense/``: the text encoder artifact and ``vectors.safetensors``;
- ``catalog.safetensors`` (item categories, item tags as CSR, item topic mixtures as
  (n, top) ids and weights) + ``catalog.json`` (note ids,
  category and tag names, the config it was built with);
- ``intent.safetensors`` + ``intent.json`` (the category model);
- ``suggest.json``, ``rewrites.json`` (mined), ``fusion.json`` (learned fusion, optional).

JSON and safetensors only, never pickle.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from notefeed.search.base import SearchError
from notefeed.search.config import SearchConfig
from notefeed.search.dense import DenseIndex
from notefeed.search.fusion import LearnedFusion
from notefeed.search.intent import CategoryModel
from notefeed.search.lexical import LexicalIndex
from notefeed.search.rewrite import MinedRewrites
from notefeed.search.suggest import Suggester
from notefeed.search.topics import TopicTable

if TYPE_CHECKING:
    from notefeed.search.pipeline import SearchPipeline

__all__ = ["save_state", "load_state", "folder_lock", "FORMAT_VERSION"]

FORMAT_VERSION = 2  # 2: topic mixtures in catalog.safetensors


@contextlib.contextmanager
def folder_lock(folder: Path, timeout_s: float = 600.0) -> Iterator[None]:
    """Hold the exclusive lock of the index folder ``folder`` (``<folder>.lock``, an advisory
    ``flock``, released when the process dies): the one writer of a workspace's shared index
    among serving workers and ``notefeed search``. Waits up to ``timeout_s``, then
    :class:`SearchError`."""
    import fcntl

    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f"{folder.name}.lock", "a+b") as f:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise SearchError(f"path: {folder} is locked by another process for over {timeout_s:.0f} s") from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SearchError(f"{path}: missing (build the search index first: notefeed search --build)") from None
    except ValueError as e:
        raise SearchError(f"{path}: not valid JSON ({e})") from None


def save_state(p: SearchPipeline, folder: Path) -> None:
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    if p.lexical.path is None or p.lexical.path != folder / "lexical":
        raise SearchError(f"path: the lexical index lives at {p.lexical.path}, not under {folder}")
    p.lexical.save()
    if p.dense is not None:
        p.dense.save(folder / "dense")
    lens = np.array([len(t) for t in p.item_tags], np.int64)
    indptr = np.r_[0, np.cumsum(lens)].astype(np.int64)
    flat = np.fromiter((t for ts in p.item_tags for t in ts), np.int64, int(lens.sum()))
    t_ids, t_w = p.topics.arrays
    save_file({"item_category": np.asarray(p.item_category, np.int32), "tag_indptr": indptr, "tag_ids": flat,
               "topic_ids": np.ascontiguousarray(t_ids), "topic_w": np.ascontiguousarray(t_w)},
              str(folder / "catalog.safetensors"))
    _write_json(folder / "catalog.json", {"format_version": FORMAT_VERSION, "note_ids": p.note_ids,
                                          "categories": p.categories, "tags": p.tags,
                                          "config": p.config.model_dump(mode="json"), "dense": p.dense is not None,
                                          "edits_seq": p.edits_seq})
    m = p.intent
    save_file({"log_prior": m.log_prior, "log_lik": m.log_lik}, str(folder / "intent.safetensors"))
    _write_json(folder / "intent.json", {"alpha": m.alpha, "categories": m.categories, "vocab": list(m.vocab)})
    s = p.suggester
    _write_json(folder / "suggest.json", {"source": s.source, "phrases": dict(s._weight)})
    if p.mined is not None:
        p.mined.save(folder / "rewrites.json")
    if p.fusion is not None:
        p.fusion.save(folder / "fusion.json")


def load_state(cls: type[SearchPipeline], folder: Path, config: SearchConfig | None) -> SearchPipeline:
    from safetensors.numpy import load_file

    meta = _read_json(folder / "catalog.json")
    if meta.get("format_version") != FORMAT_VERSION:
        raise SearchError(f"{folder / 'catalog.json'}: format_version {meta.get('format_version')!r}, "
                          f"expected {FORMAT_VERSION}")
    cfg = config or SearchConfig.model_validate(meta["config"])
    cat = load_file(str(folder / "catalog.safetensors"))
    note_ids = [str(x) for x in meta["note_ids"]]
    if (len(cat["item_category"]) != len(note_ids) or len(cat["tag_indptr"]) != len(note_ids) + 1
            or "topic_ids" not in cat or len(cat["topic_ids"]) != len(note_ids)):
        raise SearchError(f"{folder}: catalog.safetensors does not match catalog.json ({len(note_ids)} notes)")
    ip, ids = cat["tag_indptr"], cat["tag_ids"].tolist()
    item_tags = [ids[ip[i]: ip[i + 1]] for i in range(len(note_ids))]
    lex = LexicalIndex(folder / "lexical", boosts=cfg.boosts, heap_mb=cfg.index_heap_mb, threads=cfg.index_threads)
    if lex.n_docs != len(note_ids) or lex.index.searcher().num_docs != lex.n_docs:  # not closed after an add
        raise SearchError(f"{folder / 'lexical'}: holds {lex.index.searcher().num_docs} notes, vocab.json {lex.n_docs}, "
                          f"catalog.json {len(note_ids)}: saved state is stale")
    dense = (DenseIndex.load(folder / "dense", hnsw_min=cfg.hnsw_min, approx=cfg.dense_ann, nprobe=cfg.dense_nprobe)
             if meta.get("dense") and cfg.dense else None)
    im = _read_json(folder / "intent.json")
    it = load_file(str(folder / "intent.safetensors"))
    intent = CategoryModel(float(im["alpha"]))
    intent.categories, intent.vocab = list(im["categories"]), {t: i for i, t in enumerate(im["vocab"])}
    intent.log_prior, intent.log_lik = it["log_prior"], it["log_lik"]
    sj = _read_json(folder / "suggest.json")
    sug = Suggester(source=sj["source"])
    for phrase, w in sj["phrases"].items():
        sug._weight[phrase] = int(w)
    sug._sorted = sorted(sug._weight)
    mined = MinedRewrites.load(folder / "rewrites.json") if (folder / "rewrites.json").exists() else None
    fusion = LearnedFusion.load(folder / "fusion.json") if (folder / "fusion.json").exists() else None
    p = cls(cfg, lex, dense, intent, sug, note_ids, cat["item_category"].astype(int).tolist(),
            [str(c) for c in meta["categories"]], item_tags, [str(t) for t in meta["tags"]],
            mined=mined, fusion=fusion, path=folder, topics=TopicTable(cat["topic_ids"], cat["topic_w"]))
    p.edits_seq = int(meta.get("edits_seq", 0))
    return p
