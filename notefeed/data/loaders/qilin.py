"""Qilin (Xiaohongshu) toy sample: the exact schema of a RedNote feed and search log.

Field names are pinned to the source files:

- ``notes.csv``: ``note_idx`` -> ``note_id`` (as a string), ``note_title`` -> ``title``,
  ``note_content`` -> ``text``, ``#topic[话题]#`` hashtags in the content -> ``tags``,
  ``taxonomy1_id`` -> ``category`` (``taxonomy2_id``/``taxonomy3_id`` kept as columns),
  ``image_path`` (a numpy repr of a string array, may span lines) -> ``media`` (list), and the
  engagement counters (``imp_num`` ... ``accum_comment_num``, ``note_type``) as float columns.
  ``note_embedding`` is not loaded. Notes have no author in Qilin: ``author_id`` ``"unknown"``.
- ``recommendation_train.csv`` / ``recommendation_test.csv``: one row per feed request
  (``request_idx``, ``session_idx``, ``user_idx``); ``rec_result_details_with_idx`` is a numpy
  repr of dicts ``{click, collect, comment, like, note_id, note_idx, page_time, position,
  request_timestamp (ms), share}``. Each dict becomes an ``impression`` event (surface
  ``feed``, ``position``, ``request_id`` ``"rec-<request_idx>"``) plus one event per positive
  label (``click``, ``like``, ``collect``, ``comment``, ``share``) at the same time and
  position; ``page_time`` (seconds) is the ``dwell_s`` of the ``click`` event.
- ``search_train.csv`` / ``search_test.csv`` / ``dqa.csv``: the same for search
  (``search_result_details_with_idx``, ``search_timestamp`` in s, surface ``search``,
  request ids ``"search-<search_idx>"`` / ``"dqa-<search_idx>"``), and each row is a
  :class:`~notefeed.schema.Query` (``query_id`` = that request id, ``text`` = ``query``,
  ``clicked_note_ids``) collected in ``meta["queries"]`` (a DataFrame).
- ``user_feat.csv``: users (``user_idx``) with every other column as an attribute.

Missing strings, written by Qilin as the literal ``nan``, become ``""``. One request can hold
the same notes at several ``request_timestamp`` values (re-served pages): each is its own
impression.

The hex ``note_id`` of an impressed note is kept in the notes column ``xhs_note_id``.
``meta["requests"]`` lists every request (``request_id, user_id, session_id, surface, split,
recent_clicked``: the ``recent_clicked_note_idxs`` history as note ids, which has no times and
so is not turned into events). ``meta["test_request_ids"]`` are the ``*_test`` requests.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from notefeed.data.dataset import DataError, Dataset
from notefeed.data.loaders import LOADERS
from notefeed.data.loaders._common import (
    need_file,
    parse_int_list,
    parse_records,
    parse_str_list,
    read_table,
    resolve_folder,
    to_float,
    to_int,
)
from notefeed.schema import Query

__all__ = ["load", "LABELS", "hashtags"]

#: Qilin's per-impression labels, which are also our event type names.
LABELS = ("click", "like", "collect", "comment", "share")
_COUNTS = (
    "note_type", "imp_num", "imp_rec_num", "imp_search_num", "click_num", "like_num", "collect_num",
    "comment_num", "share_num", "accum_like_num", "accum_collect_num", "accum_comment_num",
)
_HASHTAG = re.compile(r"#([^#\[\]\n]{1,64})\[话题\]#")


def hashtags(text: str) -> list[str]:
    """``"... #腊肠[话题]# ..."`` -> ``["腊肠"]`` (distinct, in order)."""
    return list(dict.fromkeys(t.strip() for t in _HASHTAG.findall(text or "") if t.strip()))


def _no_nan(df: pd.DataFrame) -> pd.DataFrame:
    """Qilin writes missing strings as the literal ``nan`` (pandas' repr): make them ``""``."""
    return df.replace({"nan": "", "NaN": ""})


def _notes(file: Path) -> pd.DataFrame:
    n = _no_nan(read_table(file, required=("note_idx", "note_title", "note_content", "taxonomy1_id", "image_path")))
    first = int(n.attrs["first_line"])
    out = pd.DataFrame(
        {
            "note_id": to_int(n, "note_idx", min_value=0).astype(str),
            "title": n["note_title"].to_numpy(),
            "text": n["note_content"].to_numpy(),
            "tags": [hashtags(t) for t in n["note_content"].tolist()],
            "category": n["taxonomy1_id"].to_numpy(),
            "media": [parse_str_list(t, f"{file}: row {k + first}: field 'image_path'")
                      for k, t in enumerate(n["image_path"].tolist())],
        }
    )
    for col in ("taxonomy2_id", "taxonomy3_id"):
        if col in n.columns:
            out[col] = n[col].to_numpy()
    for col in _COUNTS:
        if col in n.columns:
            out[col] = to_float(n, col, allow_missing=True)
    return out


def _log(file: Path, surface: str, prefix: str, split: str) -> tuple[list[dict], list[dict], list[Query]]:
    """(events, request rows, queries) of one request log."""
    details = "rec_result_details_with_idx" if surface == "feed" else "search_result_details_with_idx"
    idx_col = "request_idx" if surface == "feed" else "search_idx"
    req = ["user_idx", "session_idx", idx_col, details] + (["query"] if surface == "search" else [])
    df = read_table(file, required=req)
    first = int(df.attrs["first_line"])
    users = to_int(df, "user_idx", min_value=0)
    sessions = to_int(df, "session_idx", min_value=0)
    rids = to_int(df, idx_col, min_value=0)
    events: list[dict] = []
    requests: list[dict] = []
    queries: list[Query] = []
    for k in range(len(df)):
        where = f"{file}: row {k + first}: field '{details}'"
        rid, uid = f"{prefix}-{rids[k]}", str(users[k])
        recent = df["recent_clicked_note_idxs"].iloc[k] if "recent_clicked_note_idxs" in df else "[]"
        requests.append(
            {
                "request_id": rid, "user_id": uid, "session_id": str(sessions[k]), "surface": surface,
                "split": split,
                "recent_clicked": [str(x) for x in parse_int_list(recent, where.replace(details, "recent_clicked_note_idxs"))],
            }
        )
        clicked: list[str] = []
        ts_seen: list[int] = []
        for j, rec in enumerate(parse_records(df[details].iloc[k], where)):
            try:
                nid = str(int(rec["note_idx"]))  # type: ignore[call-overload]
                raw_ts = float(rec.get("request_timestamp", rec.get("search_timestamp")))  # type: ignore[arg-type]
                pos = int(rec["position"])  # type: ignore[call-overload]
            except (KeyError, TypeError, ValueError) as e:
                raise DataError(f"{where}: record {j}: missing or non-numeric {e}") from None
            ts = int(raw_ts // 1000) if raw_ts > 1e11 else int(raw_ts)  # feed logs use milliseconds
            ts_seen.append(ts)
            base = {"user_id": uid, "note_id": nid, "ts": ts, "position": pos, "request_id": rid,
                    "surface": surface, "xhs_note_id": str(rec.get("note_id", ""))}
            events.append({**base, "type": "impression"})
            for label in LABELS:
                v = rec.get(label)
                if v is not None and float(v) > 0:  # type: ignore[arg-type]
                    ev = {**base, "type": label}
                    if label == "click":
                        pt = rec.get("page_time")
                        ev["dwell_s"] = float(pt) if pt is not None else np.nan  # type: ignore[arg-type]
                        clicked.append(nid)
                    events.append(ev)
        if surface == "search":
            text = str(df["query"].iloc[k]).strip()
            if not text:
                raise DataError(f"{file}: row {k + first}: field 'query': empty query text")
            queries.append(Query(query_id=rid, user_id=uid, text=text, ts=min(ts_seen, default=0),
                                 clicked_note_ids=clicked))
    return events, requests, queries


_LOGS = (
    ("recommendation_train.csv", "feed", "rec", "train"),
    ("recommendation_test.csv", "feed", "rec", "test"),
    ("search_train.csv", "search", "search", "train"),
    ("search_test.csv", "search", "search", "test"),
    ("dqa.csv", "search", "dqa", "train"),
)


@LOADERS.register("qilin")
def load(path: Path | None = None, **options: object) -> Dataset:
    """Qilin toy from ``path`` (the ``qilin_toy`` folder); ``notes.csv`` and
    ``recommendation_train.csv`` are required, the other files optional."""
    folder = resolve_folder(path, "qilin_toy")
    notes = _notes(need_file(folder, "notes.csv", "qilin"))
    need_file(folder, "recommendation_train.csv", "qilin")
    events: list[dict] = []
    requests: list[dict] = []
    queries: list[Query] = []
    for fname, surface, prefix, split in _LOGS:
        if (folder / fname).is_file():
            e, r, q = _log(folder / fname, surface, prefix, split)
            events += e
            requests += r
            queries += q
    ev = pd.DataFrame(events)
    if "dwell_s" not in ev:
        ev["dwell_s"] = np.nan
    seen = ev.drop_duplicates("note_id")[["note_id", "xhs_note_id"]]
    notes = notes.merge(seen, on="note_id", how="left")
    notes = pd.concat([notes, seen[~seen["note_id"].isin(notes["note_id"])]], ignore_index=True)
    notes["xhs_note_id"] = notes["xhs_note_id"].fillna("")
    users = None
    ufile = folder / "user_feat.csv"
    if ufile.is_file():
        u = _no_nan(read_table(ufile, required=("user_idx",)))
        users = u.drop(columns=["user_idx"]).assign(user_id=to_int(u, "user_idx", min_value=0).astype(str))
        for col in users.columns:
            if col.endswith("_num") or col.startswith("dense_feat"):
                users[col] = to_float(u, col, allow_missing=True)
        users = users[["user_id"] + [c for c in users.columns if c != "user_id"]]
    req = pd.DataFrame(requests)
    meta = {
        "source": str(folder),
        "queries": pd.DataFrame([q.model_dump() for q in queries],
                                columns=["query_id", "user_id", "text", "ts", "clicked_note_ids"]),
        "requests": req,
        "test_request_ids": req.loc[req["split"] == "test", "request_id"].tolist(),
    }
    return Dataset.build("qilin", ev.drop(columns=["xhs_note_id"]), notes=notes, users=users, meta=meta)
