"""Batch jobs written once against :class:`~notefeed.batch.base.BatchEngine.map`.

**Item-to-item neighbour tables** (Swing, ItemCF) in two sharded phases:

1. *by user*: the log is split by ``user % shards``; each shard deduplicates its users'
   (user, item) pairs and caps each history (:func:`~notefeed.recall.kernels.cap_histories`,
   which depends on nothing but the user's own events). The driver concatenates the capped
   histories, restores user order (a stable sort: each shard is already ordered within a user)
   and builds the two capped matrices (:func:`~notefeed.recall.kernels.capped_matrices`) —
   the same arrays the local kernel builds, so everything after is computed on equal inputs.
   :func:`lake_cap_log` does the same with each task reading its users' events straight from
   the event lake's Parquet files (the driver never holds the log).
2. *by item row*: Swing's row ``i`` sums over pairs of ``i``'s users, which live in any
   user shard, so the pair counting is sharded by item row instead: the capped matrices go
   to the object store once, and each task computes a run of the very blocks the local
   :func:`~notefeed.recall.kernels.build_rows` computes (:func:`~notefeed.recall.kernels.plan_blocks`).
   Same blocks, same arithmetic order: the merged table is bit-for-bit the local one.

**Training sequences** (the sequence model's input, :func:`sharded_sequences`): the positive
log split by ``user % shards``, row order kept; each shard builds its users' sequences (first
positive per note, oldest first) exactly as the local code does, since a user's rows are all
in one shard and in the same order.

**Item embeddings and the FAISS index**: item ranges aligned to the encoder's batch size (so
each batch is the batch the local encoder runs, same floats) are encoded on the workers, each
builds an exact inner-product index of its range, and the driver merges the shard indexes
(``merge_from``) into one :class:`~notefeed.recall.ann.AnnIndex`. An HNSW index is built on
the driver from the merged vectors (HNSW graphs do not merge).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import scipy.sparse as sp

from notefeed.recall.kernels import block_rows, cap_histories, capped_matrices, plan_blocks

__all__ = ["sharded_cap_log", "lake_cap_log", "sharded_rows", "sharded_sequences", "split_by_user",
           "iter_user_shards", "embed_items", "tasks_of"]


def split_by_user(users: np.ndarray, shards: int, *cols: np.ndarray) -> list[tuple[np.ndarray, ...]]:
    """``[(users, *cols) of shard 0, ...]``: rows split by ``users % shards``, order kept."""
    return list(iter_user_shards(users, shards, *cols))


def iter_user_shards(users: np.ndarray, shards: int, *cols: np.ndarray) -> Iterator[tuple[np.ndarray, ...]]:
    """:func:`split_by_user`, one shard at a time: a shard's rows are copied out only when it is
    reached, so a consumer that sends each shard away (the Ray engine puts it in the object
    store) holds one shard's copy, not the whole log's a second time."""
    users = np.asarray(users, np.int64)
    shards = max(1, int(shards))
    # a small key sorts by radix; the stable order (hence every shard) is the same as an int64 key's
    key = (users % shards).astype(np.uint16 if shards <= 1 << 16 else np.int64)
    order = np.argsort(key, kind="stable")
    ends = np.cumsum(np.bincount(key, minlength=shards)).tolist()
    del key
    lo = 0
    for hi in ends:
        idx = order[lo:hi]
        yield tuple(np.ascontiguousarray(a[idx]) for a in (users, *cols))
        lo = hi


def _cap_shard(shared: dict[str, Any], part: tuple[np.ndarray, np.ndarray, np.ndarray]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    u, i, t = part
    return cap_histories(u, i, t, shared["n_users"], shared["n_items"], shared["item_cap"])


def sharded_cap_log(engine: Any, users: np.ndarray, items: np.ndarray, ts: np.ndarray, n_users: int,
                    n_items: int, item_cap: int, user_cap: int, shards: int | None = None,
                    progress: bool = False) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """:func:`~notefeed.recall.kernels.cap_log` with the per-user work sharded by user."""
    shards = shards or max(1, engine.workers)
    parts = iter_user_shards(users, shards, np.asarray(items, np.int64), np.asarray(ts, np.int64))
    capped = engine.map(_cap_shard, parts, {"n_users": n_users, "n_items": n_items, "item_cap": item_cap},
                        desc="cap histories (by user)" if progress else None)
    return _merge_capped(capped, n_users, n_items, user_cap)


def _sequence_shard(shared: dict[str, Any], part: tuple[np.ndarray, np.ndarray, np.ndarray]
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(users, sequence lengths, concatenated items) of one user shard."""
    import pandas as pd

    from notefeed.recall.sequential import log_sequences

    u, i, t = part
    users = np.unique(u)
    local = np.searchsorted(users, u)  # the shard's users as rows 0..k-1, row order kept
    seqs = log_sequences(pd.DataFrame({"user": local, "item": i, "ts": t}), len(users))
    return users, np.array([len(q) for q in seqs], np.int64), (np.concatenate(seqs) if seqs else np.empty(0, np.int64))


def sharded_sequences(engine: Any, users: np.ndarray, items: np.ndarray, ts: np.ndarray, n_users: int,
                      shards: int | None = None, progress: bool = False) -> list[np.ndarray]:
    """:func:`~notefeed.recall.sequential.training_sequences` of a time-ordered positive log,
    the per-user work sharded by user; one int64 array per user (empty when none)."""
    shards = shards or max(1, engine.workers)
    parts = iter_user_shards(users, shards, np.asarray(items, np.int64), np.asarray(ts, np.int64))
    done = engine.map(_sequence_shard, parts, {}, desc="training sequences (by user)" if progress else None)
    out = [np.empty(0, np.int64)] * n_users
    for us, lens, flat in done:
        for u, seq in zip(us.tolist(), np.split(flat, np.cumsum(lens)[:-1]), strict=True):
            out[u] = seq
    return out


def _merge_capped(capped: list, n_users: int, n_items: int, user_cap: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """The shards' capped histories, back in user order (a stable sort: each shard is already
    ordered within a user), as the two capped matrices. Empties ``capped`` once its arrays are
    copied (on Ray they are object-store pages), and keeps one copy of each column."""
    if not capped:
        e = np.empty(0, np.int64)
        return capped_matrices(e, e, e, n_users, n_items, user_cap)
    u, i, t = (np.concatenate([c[k] for c in capped]) for k in range(3))
    capped.clear()
    order = np.argsort(u, kind="stable")
    u, i, t = u[order], i[order], t[order]
    del order
    return capped_matrices(u, i, t, n_users, n_items, user_cap)


def _cap_lake_shard(shared: dict[str, Any], k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import duckdb
    import pandas as pd

    types = ", ".join(f"'{t}'" for t in shared["types"])
    with duckdb.connect() as con:
        con.execute("SET threads TO 1")  # one task, one core
        ev = con.execute(
            f"SELECT user_id, note_id, ts FROM read_parquet('{shared['root']}/day=*/part-*.parquet') "
            f"WHERE type IN ({types}) AND hash(user_id) % {int(shared['shards'])} = {int(k)}").df()
    u = pd.Index(shared["user_ids"]).get_indexer(ev["user_id"])
    i = pd.Index(shared["note_ids"]).get_indexer(ev["note_id"])
    if (u < 0).any() or (i < 0).any():
        raise ValueError("lake: events name users or notes the dataset does not have (export the lake again)")
    return cap_histories(u, i, ev["ts"].to_numpy(np.int64), len(shared["user_ids"]), len(shared["note_ids"]),
                         shared["item_cap"])


def lake_cap_log(engine: Any, lake_root: Any, user_ids: np.ndarray, note_ids: np.ndarray, item_cap: int,
                 user_cap: int, shards: int | None = None, types: tuple[str, ...] | None = None,
                 progress: bool = False) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """:func:`~notefeed.recall.kernels.cap_log` of the positive events in an event lake, each
    task reading its own users' events from the Parquet files (``hash(user_id) % shards``), so
    the driver never holds the log. ``user_ids`` / ``note_ids``: the dataset's id order (its
    dense indices). Equal to capping the dataset's positive log."""
    from notefeed.schema import POSITIVE_TYPES

    shards = shards or max(1, engine.workers)
    shared = {"root": str(lake_root), "shards": shards, "types": tuple(types or POSITIVE_TYPES),
              "user_ids": np.asarray(user_ids, dtype=object), "note_ids": np.asarray(note_ids, dtype=object),
              "item_cap": int(item_cap)}
    capped = engine.map(_cap_lake_shard, list(range(shards)), shared,
                        desc="cap histories from the lake (by user)" if progress else None)
    return _merge_capped(capped, len(user_ids), len(note_ids), user_cap)


def tasks_of(blocks: list[tuple[int, int]], n_tasks: int) -> list[list[tuple[int, int]]]:
    """Consecutive runs of ``blocks`` (already balanced by work), about ``n_tasks`` of them."""
    n = max(1, min(n_tasks, len(blocks)))
    return [list(b) for b in np.array_split(np.asarray(blocks, dtype=np.int64).reshape(-1, 2), n) if len(b)]


def _rows_task(shared: dict[str, Any], blocks: list) -> sp.csr_matrix:
    rows = shared["rows"]
    parts = [block_rows(shared["kernel"], shared["hist"], shared["item_users"], rows[int(lo):int(hi)],
                        shared["top_n"], **shared["params"]) for lo, hi in blocks]
    return sp.vstack(parts, format="csr", dtype=np.float32)


def sharded_rows(engine: Any, kernel: str, hist: sp.csr_matrix, item_users: sp.csr_matrix, rows: np.ndarray,
                 top_n: int, block: int = 2048, tasks_per_worker: int = 4, progress: bool = False,
                 **params: float) -> sp.csr_matrix:
    """:func:`~notefeed.recall.kernels.build_rows`, the blocks spread over the engine's workers."""
    if kernel not in ("swing", "itemcf"):
        raise ValueError(f"kernel must be 'swing' or 'itemcf', got {kernel!r}")
    rows = np.asarray(rows, np.int64)
    blocks = plan_blocks(item_users, rows, block)
    if not blocks:
        return sp.csr_matrix((0, hist.shape[1]), dtype=np.float32)
    shared = {"kernel": kernel, "hist": hist.tocsr(), "item_users": item_users.tocsr(), "rows": rows,
              "top_n": int(top_n), "params": dict(params)}
    parts = engine.map(_rows_task, tasks_of(blocks, tasks_per_worker * max(1, engine.workers)), shared,
                       desc=f"{kernel} rows (by item)" if progress else None)
    return sp.vstack(parts, format="csr", dtype=np.float32)


def _embed_task(shared: dict[str, Any], rng: tuple[int, int]) -> tuple[int, np.ndarray, np.ndarray]:
    import faiss

    ch = shared["channel"]
    lo, hi = rng
    vec = ch.encode_items(np.arange(lo + 1, hi + 1), ch.item_side[lo:hi], batch=shared["batch"])
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(vec.shape[1]))
    index.add_with_ids(np.ascontiguousarray(vec, np.float32), np.arange(lo, hi, dtype=np.int64))
    return lo, vec, faiss.serialize_index(index)


def embed_items(engine: Any, channel: Any, batch: int = 8192, tasks_per_worker: int = 2,
                progress: bool = False) -> tuple[np.ndarray, Any]:
    """Encode every item of a fitted two-tower ``channel`` on the engine and build its index:
    ``(vectors (n_items, dim) float32, AnnIndex)``, equal to the channel's own export."""
    import faiss

    from notefeed.recall.ann import AnnIndex

    n = int(channel.item_side.shape[0])
    n_batches = -(-n // batch)
    per = max(1, -(-n_batches // (tasks_per_worker * max(1, engine.workers))))
    ranges = [(s * batch, min(n, (s + per) * batch)) for s in range(0, n_batches, per)]
    out = engine.map(_embed_task, ranges, {"channel": channel, "batch": batch},
                     desc="embed items" if progress else None)
    out.sort(key=lambda r: r[0])
    dim = int(channel.model.cfg.dim)
    vectors = np.concatenate([v for _, v, _ in out]) if out else np.empty((0, dim), np.float32)
    index = AnnIndex(dim, kind=channel.ann_kind, m=channel.hnsw_m, ef_search=channel.ef_search, expected=n)
    if index.kind == "flat":
        for _, _, blob in out:  # the shard indexes, merged
            index.index.merge_from(faiss.deserialize_index(blob), 0)
    else:
        index.add(vectors, np.arange(n, dtype=np.int64))
    return vectors, index
