"""Generic CSV/Parquet import: validation, strict vs --skip-bad, exact file:line:field messages."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from notefeed.data.dataset import DataError
from notefeed.data.importer import import_folder
from notefeed.data.loaders import load_dataset

EVENTS = (
    "user_id,note_id,ts,type,dwell_s,position,request_id,surface\n"
    "u1,n1,10,click,3.5,0,r1,feed\n"
    "u2,n1,11,like,,,,\n"
    "u3,n2,12,impression,,4,r2,search\n"
)
NOTES = 'note_id,author_id,title,text,tags,category,created_at\nn1,c1,"Hello, world","two\nlines",a|b,food,100\nn2,c2,T,,,,\n'
CREATORS = "creator_id,followers\nc1,5000\nc2,10\n"


def _folder(tmp: Path, events: str = EVENTS, **extra: str) -> Path:
    (tmp / "events.csv").write_text(events, encoding="utf-8")
    for stem, text in {"notes": NOTES, "creators": CREATORS, **extra}.items():
        if text:
            (tmp / f"{stem}.csv").write_text(text, encoding="utf-8")
    return tmp


def test_valid_folder_imports_every_field(tmp_path):
    res = import_folder(_folder(tmp_path, users="user_id,age\nu1,30\n"))
    ds = res.dataset
    assert res.problems == []
    assert (ds.n_users, ds.n_items, len(ds.events)) == (3, 2, 3)
    n1 = ds.notes.iloc[ds.item_index["n1"]]
    assert (n1["title"], n1["text"], n1["tags"], n1["category"], n1["created_at"]) == (
        "Hello, world", "two\nlines", ["a", "b"], "food", 100,
    )
    assert ds.notes.iloc[ds.item_index["n2"]]["tags"] == []
    assert dict(zip(ds.creators["creator_id"], ds.creators["followers"], strict=True)) == {"c1": 5000, "c2": 10}
    ev = ds.events.iloc[0]
    assert (ev["dwell_s"], ev["position"], ev["request_id"], ev["surface"]) == (3.5, 0, "r1", "feed")
    assert ds.events.iloc[1]["surface"] == "feed" and ds.events.iloc[1]["position"] == -1
    assert ds.events.iloc[2]["surface"] == "search"
    assert ds.users.iloc[ds.user_index["u1"]]["age"] == "30"


BAD_ROWS = [
    ("u9,n1,xx,click,,,,\n", "ts: expected an integer, got 'xx'"),
    ("u9,n1,-5,click,,,,\n", "ts: must be >= 0"),
    ("u9,n1,5,bogus,,,,\n", "type: expected one of"),
    (",n1,5,click,,,,\n", "user_id: missing id"),
    ("u9,n1,5,click,99999999,,,\n", "dwell_s: out of range"),
    ("u9,n1,5,click,,1.5,,\n", "position: expected an integer"),
    ("u9,n1,5,click,,,,home\n", "surface: expected one of"),
    ("u9,n1,5,click\n", "<line>: expected 8 fields, found 4"),
    ("u\x019,n1,5,click,,,,\n", "user_id: control character in the id"),
]


@pytest.mark.parametrize("row,reason", BAD_ROWS)
def test_strict_by_default_names_file_line_field(tmp_path, row, reason):
    folder = _folder(tmp_path, EVENTS + row)
    with pytest.raises(DataError) as err:
        import_folder(folder)
    assert f"{folder / 'events.csv'}:5: {reason}" in str(err.value)


def test_skip_bad_loads_the_rest_and_lists_problems(tmp_path):
    bad = "u9,n1,xx,click,,,,\nu8,n2,5,click\nu7,n2,6,share,,,,\n"
    folder = _folder(tmp_path, EVENTS + bad, creators="creator_id,followers\nc1,-1\nc2,3\n")
    res = import_folder(folder, skip_bad=True)
    ev_file, cr_file = folder / "events.csv", folder / "creators.csv"
    assert res.problems == [
        f"{ev_file}:5: ts: expected an integer, got 'xx'",
        f"{ev_file}:6: <line>: expected 8 fields, found 4",
        f"{cr_file}:2: followers: must be >= 0, got '-1'",
    ]
    assert len(res.dataset.events) == 4  # 3 good + u7's share
    assert res.dataset.meta["import_problems"] == res.problems


def test_line_numbers_count_multiline_fields(tmp_path):
    notes = 'note_id,title,created_at\nn1,"a\nb\nc",1\nn2,x,soon\n'
    folder = _folder(tmp_path, notes=notes)
    with pytest.raises(DataError, match=r"notes.csv:5: created_at: expected an integer"):
        import_folder(folder)


def test_missing_column_is_fatal_even_when_skipping(tmp_path):
    folder = _folder(tmp_path, "user_id,note_id,type\nu1,n1,click\n")
    with pytest.raises(DataError, match=r"events.csv: missing column 'ts'"):
        import_folder(folder, skip_bad=True)


def test_missing_events_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="events.csv"):
        import_folder(tmp_path)


def test_parquet_with_list_tags(tmp_path):
    pd.DataFrame({"user_id": ["u1", "u2"], "note_id": ["n1", "n2"], "ts": [1, 2], "type": ["click", "like"]}).to_parquet(
        tmp_path / "events.parquet"
    )
    pd.DataFrame({"note_id": ["n1", "n2"], "tags": [["x", "y"], []], "author_id": ["a", "b"]}).to_parquet(
        tmp_path / "notes.parquet"
    )
    ds = load_dataset("csv", tmp_path)
    assert ds.notes.iloc[ds.item_index["n1"]]["tags"] == ["x", "y"]
    pd.DataFrame({"user_id": ["u1"], "note_id": ["n1"], "ts": [-1], "type": ["click"]}).to_parquet(
        tmp_path / "events.parquet"
    )
    with pytest.raises(DataError, match=r"events.parquet:1: ts: must be >= 0"):
        import_folder(tmp_path)


def test_corrupt_parquet(tmp_path):
    (tmp_path / "events.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        import_folder(tmp_path)
