"""``seqfile``: a user's own sequence log (``user item item ...``) with string ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from notefeed.cli import app
from notefeed.data.dataset import DataError
from notefeed.data.loaders import dataset_for_path, load_dataset

runner = CliRunner()
LOG = "alice note-a note-b note-c\nbob\tnote-b\tnote-d\n\ncarol note-c note-a\n"


def _write(tmp_path: Path, text: str, name: str = "mylog.txt") -> Path:
    f = tmp_path / name
    f.write_text(text, encoding="utf-8")
    return f


def test_string_ids_in_time_order(tmp_path):
    ds = load_dataset("seqfile", _write(tmp_path, LOG))
    assert ds.name == "seqfile" and (ds.n_users, ds.n_items, len(ds.events)) == (3, 4, 7)
    alice = ds.users["user_id"].tolist().index("alice")
    ev = ds.events[ds.events["user"] == alice].sort_values("ts")
    assert [ds.notes["note_id"][i] for i in ev["item"]] == ["note-a", "note-b", "note-c"]
    assert ev["ts"].tolist() == [0, 1, 2]
    assert ds.meta["ts_is_position"] is True


def test_comma_variant_folder_and_attributes(tmp_path):
    _write(tmp_path, "u1, x, y\nu2,y,z\n", "log.txt")
    (tmp_path / "log_item2attributes.json").write_text(json.dumps({"x": ["red", 3], "y": []}))
    assert dataset_for_path(tmp_path) == "seqfile"
    ds = load_dataset("seqfile", tmp_path)  # a folder holding exactly one .txt
    assert sorted(ds.notes["note_id"]) == ["x", "y", "z"]
    x = ds.notes.set_index("note_id").loc["x"]
    assert list(x["tags"]) == ["red", "3"] and x["category"] == "red"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("u1 a b\nu2\n", "mylog.txt:2: field 'items': a user with no items"),
        ("u1,a,b\nu2,,c\n", "mylog.txt:2: field 'items': empty id"),
        ("u1,a,b\n,a\n", "mylog.txt:2: field 'user': empty id"),
    ],
)
def test_bad_line_named(tmp_path, text, message):
    with pytest.raises(DataError, match=message.replace("(", r"\(")):
        load_dataset("seqfile", _write(tmp_path, text))


def test_bad_encoding_and_paths(tmp_path):
    f = tmp_path / "mylog.txt"
    f.write_bytes(b"u1 a b\nu2 \xff c\n")
    with pytest.raises(DataError, match="mylog.txt:2: not UTF-8"):
        load_dataset("seqfile", f)
    with pytest.raises(DataError, match="needs a path"):
        load_dataset("seqfile")
    _write(tmp_path, "u a b\n", "other.txt")
    with pytest.raises(DataError, match="exactly one .txt"):
        load_dataset("seqfile", tmp_path)


def test_beauty_still_wants_integer_ids(tmp_path):
    (tmp_path / "Beauty.txt").write_text("1 1 2\nu2 3 4\n")
    with pytest.raises(DataError, match="Beauty.txt:2: field 'user': expected an integer id"):
        load_dataset("beauty", tmp_path)


def test_cli_path_alone_means_seqfile(tmp_path):
    f = _write(tmp_path, LOG)
    out = tmp_path / "stats.json"
    res = runner.invoke(app, ["data", "stats", "--path", str(f), "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["events"] == 7
    ws = tmp_path / "ws"
    res = runner.invoke(app, ["data", "import", "--dataset", "seqfile", "--path", str(f), "--workspace", str(ws)])
    assert res.exit_code == 0, res.output
    assert "events 7" in res.output
    bad = _write(tmp_path, "u1 a\nu2\n", "bad.txt")
    res = runner.invoke(app, ["data", "stats", "--path", str(bad)])
    assert res.exit_code == 1 and "bad.txt:2: field 'items'" in res.output.replace("\n", "")
