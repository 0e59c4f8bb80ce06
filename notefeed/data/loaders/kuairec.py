"""KuaiRec (Kuaishou) item and user side information as a catalogue-only dataset.

No interaction matrix ships with this copy, so the dataset has **zero events**: it is text
for content encoders and cold-start tests. Files:

- ``kuairec_caption_category.csv`` (required): one row per video. ``title`` = the manual
  cover text (``""`` where it is ``UNKNOWN``), ``text`` = the caption, ``tags`` = the topic
  tags (``[a,b]``, unquoted), ``category`` = first-level category name; the 2nd/3rd levels
  are columns ``category2``/``category3`` (``""`` where ``UNKNOWN``), and the three level ids
  ``category1_id..category3_id`` (-124 = unknown in the source). Read with ``\\n`` as the only
  line end: some captions contain a bare ``\\r``.
- ``item_categories.csv`` (optional): ``feat`` tag ids -> column ``feat_ids`` (list of int).
- ``user_features.csv`` (optional): users with every source column as an attribute.
No authors: ``author_id`` ``"unknown"``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from notefeed.data.dataset import Dataset
from notefeed.data.loaders import LOADERS
from notefeed.data.loaders._common import (
    empty_events,
    need_file,
    parse_int_list,
    read_table,
    resolve_folder,
    to_int,
)

__all__ = ["load", "read_users"]

_UNKNOWN = "UNKNOWN"


def _topic_tags(text: str) -> list[str]:
    t = text.strip()
    if t.startswith("[") and t.endswith("]"):
        t = t[1:-1]
    return [x.strip() for x in t.split(",") if x.strip()]


def read_users(file: Path) -> pd.DataFrame:
    """Kuaishou ``user_features*.csv``: ``user_id`` plus attribute columns (numbers as numbers)."""
    u = read_table(file, required=("user_id",))
    out = pd.DataFrame({"user_id": to_int(u, "user_id", min_value=0).astype(str)})
    for col in u.columns:
        if col == "user_id":
            continue
        num = pd.to_numeric(u[col].replace("", None), errors="coerce")
        # Keep a column numeric only when every non-empty cell parsed as a number.
        out[col] = num.to_numpy() if num.notna().sum() == (u[col] != "").sum() else u[col].to_numpy()
    return out


@LOADERS.register("kuairec")
def load(path: Path | None = None, **options: object) -> Dataset:
    """KuaiRec side info from ``path`` (the ``kuairec_side`` folder)."""
    folder = resolve_folder(path, "kuairec_side")
    cols = [
        "video_id", "manual_cover_text", "caption", "topic_tag",
        "first_level_category_id", "first_level_category_name",
        "second_level_category_id", "second_level_category_name",
        "third_level_category_id", "third_level_category_name",
    ]
    c = read_table(need_file(folder, "kuairec_caption_category.csv", "kuairec"), required=cols, lineterminator="\n")

    def known(col: str) -> list[str]:
        return ["" if v == _UNKNOWN else v for v in c[col].str.strip().tolist()]

    notes = pd.DataFrame(
        {
            "note_id": to_int(c, "video_id", min_value=0).astype(str),
            "title": known("manual_cover_text"),
            "text": c["caption"].to_numpy(),
            "tags": [_topic_tags(t) for t in c["topic_tag"].tolist()],
            "category": known("first_level_category_name"),
            "category2": known("second_level_category_name"),
            "category3": known("third_level_category_name"),
            "category1_id": to_int(c, "first_level_category_id"),
            "category2_id": to_int(c, "second_level_category_id"),
            "category3_id": to_int(c, "third_level_category_id"),
        }
    )
    feat_file = folder / "item_categories.csv"
    if feat_file.is_file():
        f = read_table(feat_file, required=("video_id", "feat"))
        first = int(f.attrs["first_line"])
        feats = {
            vid: parse_int_list(t, f"{feat_file}:{k + first}: field 'feat'")
            for k, (vid, t) in enumerate(
                zip(to_int(f, "video_id").astype(str).tolist(), f["feat"].tolist(), strict=True)
            )
        }
        notes["feat_ids"] = [feats.get(n, []) for n in notes["note_id"].tolist()]
    user_file = folder / "user_features.csv"
    users = read_users(user_file) if user_file.is_file() else pd.DataFrame({"user_id": pd.Series([], dtype=str)})
    return Dataset.build("kuairec", empty_events(), notes=notes, users=users, meta={"source": str(folder)})
