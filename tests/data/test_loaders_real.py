"""Every public dataset folder loads, with exact checks against facts of the files themselves."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from notefeed.data.loaders import DATASET_NAMES, LOADERS, load_dataset

_cache: dict[str, object] = {}


def _load(name: str, dataset_dir, *parts: str):
    dataset_dir(*parts)  # skip when absent
    if name not in _cache:
        _cache[name] = load_dataset(name)
    return _cache[name]


def _ids(ds, col: str = "item") -> np.ndarray:
    table, key = (ds.notes, "note_id") if col == "item" else (ds.users, "user_id")
    return table[key].to_numpy()[ds.events[col].to_numpy()]


def test_every_name_has_a_loader():
    from notefeed.data.loaders import _all  # noqa: F401

    assert set(DATASET_NAMES) <= set(LOADERS.names())
    assert "csv" in LOADERS


def test_movielens_small(dataset_dir):
    folder = dataset_dir("movielens", "ml-latest-small")
    ds = _load("movielens-small", dataset_dir, "movielens", "ml-latest-small")
    with open(folder / "ratings.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    n_like = sum(float(r["rating"]) >= 4 for r in rows)
    s = ds.stats()
    assert (s["users"], s["active_notes"], len(rows)) == (610, 9724, 100_836)
    assert s["notes"] == 9742  # movies.csv lists 18 movies nobody rated
    assert s["events_by_type"] == {"click": 100_836, "like": n_like}
    assert s["user_note_pairs"] == 100_836
    toy = ds.notes.iloc[ds.item_index["1"]]
    assert toy["title"] == "Toy Story (1995)" and toy["category"] == "Adventure"
    assert toy["tags"][:5] == ["Adventure", "Animation", "Children", "Comedy", "Fantasy"]
    assert "pixar" in toy["tags"]  # user tag "Pixar" lowercased
    first = rows[0]
    ev = ds.events[(ds.events["user"] == ds.user_index[first["userId"]]) & (ds.events["item"] == ds.item_index[first["movieId"]])]
    assert set(ev["type"].astype(str)) == {"click", "like"} and set(ev["ts"]) == {int(first["timestamp"])}
    assert len(ds.meta["ratings"]) == 100_836


def test_movielens_100k(dataset_dir):
    ds = _load("movielens-100k", dataset_dir, "movielens", "ml-100k")
    s = ds.stats()
    assert (s["users"], s["notes"], s["events_by_type"]["click"]) == (943, 1682, 100_000)
    u1 = ds.users.iloc[ds.user_index["1"]]
    assert (u1["age"], u1["gender"], u1["occupation"]) == (24, "M", "technician")
    golden = ds.notes.iloc[ds.item_index["2"]]
    assert golden["title"] == "GoldenEye (1995)" and golden["tags"] == ["Action", "Adventure", "Thriller"]
    first = ds.events[(ds.events["user"] == ds.user_index["196"]) & (ds.events["item"] == ds.item_index["242"])]
    assert list(first["type"].astype(str)) == ["click"] and list(first["ts"]) == [881250949]  # rated 3


def test_taobao(dataset_dir):
    folder = dataset_dir("taobao_userbehavior_subset")
    ds = _load("taobao", dataset_dir, "taobao_userbehavior_subset")
    with open(folder / "UserBehavior.csv", newline="") as fh:
        lines = [r for r in csv.reader(fh)]
    assert len(lines) == 84_476 and len(lines[-1]) == 4  # the published head is cut mid-line
    full = [r for r in lines if len(r) == 5]
    counts = {b: sum(r[3] == b for r in full) for b in ("pv", "cart", "fav", "buy")}
    s = ds.stats()
    assert s["events"] == 84_475 and ds.meta["dropped_truncated_line"] == 84_476
    assert s["events_by_type"] == {"click": counts["pv"], "like": counts["cart"], "collect": counts["fav"], "share": counts["buy"]}
    assert s["users"] == 815 == len({r[0] for r in full})
    assert ds.meta["type_map"] == {"click": "pv", "like": "cart", "collect": "fav", "share": "buy"}
    assert ds.notes.iloc[ds.item_index["2268318"]]["category"] == "2520377"


def test_beauty_and_lastfm_s3rec(dataset_dir):
    folder = dataset_dir("amazon_s3rec")
    ds = _load("beauty", dataset_dir, "amazon_s3rec")
    s = ds.stats()
    assert (s["users"], s["notes"], s["events"]) == (22_363, 12_101, 198_502)
    u1 = ds.events[ds.events["user"] == ds.user_index["1"]].sort_values("ts")
    assert ds.notes["note_id"].to_numpy()[u1["item"]].tolist() == ["1", "2", "3", "4", "5"]
    assert u1["ts"].tolist() == [0, 1, 2, 3, 4]
    attrs = json.loads((folder / "Beauty_item2attributes.json").read_text())
    n4 = ds.notes.iloc[ds.item_index["4"]]
    assert n4["tags"] == [str(a) for a in attrs["4"]] and n4["category"] == str(attrs["4"][0])
    lf = _load("lastfm-s3rec", dataset_dir, "amazon_s3rec")
    n_lines = sum(1 for line in open(folder / "LastFM.txt") if line.strip())
    assert lf.n_users == n_lines == 1090
    lf_attrs = json.loads((folder / "LastFM_item2attributes.json").read_text())
    assert lf.notes.iloc[lf.item_index["1"]]["tags"] == list(dict.fromkeys(str(a) for a in lf_attrs["1"]))


def test_catalogue_only_sets(dataset_dir):
    kr = _load("kuairec", dataset_dir, "kuairec_side")
    assert (kr.n_items, kr.n_users, len(kr.events)) == (10_728, 7176, 0)
    v4 = kr.notes.iloc[kr.item_index["4"]]
    assert v4["title"] == "五爱街最美美女 一天1q" and v4["category"] == "时尚" and v4["category3"] == "女装"
    assert v4["tags"] == ["五爱市场", "感谢快手我要上热门", "搞笑"]
    assert kr.notes.iloc[kr.item_index["1378"]]["category"] == "明星娱乐"  # caption holds a bare \r
    assert kr.notes.iloc[kr.item_index["1"]]["feat_ids"] == [27, 9]
    assert kr.stats()["events"] == 0

    kd = _load("kuairand", dataset_dir, "kuairand_pure_side")
    assert (kd.n_items, kd.n_users, len(kd.creators)) == (7583, 27_285, 6510)
    v0 = kd.notes.iloc[0]
    assert (v0["author_id"], v0["created_at"], v0["tags"]) == ("7349781", 1649548800, ["39"])
    # matched creators: an author id equal to a user id whose is_video_author == 1
    hit = kd.creators[kd.creators["followers"] > 0]
    users = kd.users.set_index("user_id")
    assert len(hit) == kd.meta["authors_matched"] > 0
    assert (users.loc[hit["creator_id"], "is_video_author"] == 1).all()
    assert (users.loc[hit["creator_id"], "fans_user_num"].to_numpy() == hit["followers"].to_numpy()).all()

    ml = _load("microlens", dataset_dir, "microlens100k_titles")
    assert ml.n_items == 19_738 and len(ml.events) == 0
    assert ml.notes.iloc[1][["note_id", "title", "comment_count"]].tolist() == [
        "2", "beautiful dish with 5 pounds of duck intestines", 153,
    ]


def test_lastfm_hetrec(dataset_dir):
    folder = dataset_dir("lastfm_hetrec2k")
    ds = _load("lastfm-hetrec", dataset_dir, "lastfm_hetrec2k")
    pairs = [line.split() for line in open(folder / "user_artists.dat") if line.strip()]
    assert len(ds.events) == len(pairs) == 92_834 and set(ds.events["ts"]) == {0}
    assert ds.n_items == 17_632 and ds.notes.iloc[ds.item_index["1"]]["title"] == "MALICE MIZER"
    plays = ds.meta["play_counts"]
    assert plays.iloc[0].tolist() == ["2", "51", 13883]
    assert len(ds.social) == 25_434 and set(ds.social["kind"]) == {"friend"}
    u2 = ds.social[ds.social["user"] == ds.user_index["2"]]["target_id"].tolist()
    assert u2[:2] == ["275", "428"]


def test_qilin_exact_values(dataset_dir):
    ds = _load("qilin", dataset_dir, "qilin_toy")
    n0 = ds.notes.iloc[ds.item_index["0"]]
    assert n0["title"] == "这题我会！每年都要灌几十斤的肉！"
    assert n0["tags"] == ["腊肠"] and n0["category"] == "5ab094be481d26b8ef9045f1"
    assert n0["taxonomy3_id"] == "c00000000000000000000488" and n0["like_num"] == 81.0
    assert len(n0["media"]) == 10 and n0["media"][0] == "image/part_114/1147826/5133571.jpg"
    assert ds.notes.iloc[ds.item_index["1"]]["taxonomy3_id"] == ""  # "nan" in the file
    assert ds.notes.iloc[ds.item_index["6"]]["media"] == []
    # label totals over the five logs (77+115+206+303+226 impressions)
    assert ds.stats()["events_by_type"] == {"impression": 927, "click": 144, "like": 16, "collect": 5, "share": 2}
    ev = ds.events.assign(note=_ids(ds), uid=_ids(ds, "user"))
    first = ev[ev["request_id"] == "rec-71609"].sort_values(["ts", "position"])
    assert first["uid"].unique().tolist() == ["8226"]
    assert (first["type"] == "impression").sum() == 8  # 4 notes served at two timestamps
    row = first[first["ts"] == 1732668760].iloc[0]
    assert (row["note"], row["position"], row["surface"], row["type"]) == ("1148386", 1, "feed", "impression")
    assert ds.notes.iloc[ds.item_index["1148386"]]["xhs_note_id"] == "6745a3800000000006016610"
    click = ev[(ev["request_id"] == "search-25147") & (ev["type"] == "click") & (ev["note"] == "785089")]
    assert click["dwell_s"].tolist() == [pytest.approx(5.974)] and click["surface"].tolist() == ["search"]
    liked = ev[(ev["request_id"] == "rec-65231") & (ev["type"] == "like")]
    assert liked["note"].tolist() == ["1206487"] and liked["position"].tolist() == [17]
    q = ds.meta["queries"].set_index("query_id").loc["search-25147"]
    assert (q["user_id"], q["text"], q["ts"]) == ("6948", "渔歌子主旨", 1732475484)
    assert q["clicked_note_ids"][0] == "785089"
    req = ds.meta["requests"].set_index("request_id").loc["rec-71609"]
    assert len(req["recent_clicked"]) == 20 and req["recent_clicked"][0] == "831932"
    assert req["recent_clicked"][-1] == "816412" and req["split"] == "train"
    assert len(ds.meta["test_request_ids"]) == 20
    u2 = ds.users.iloc[ds.user_index["2"]]
    assert (u2["gender"], u2["age"], u2["fans_num"], u2["location"]) == ("female", "23-25", 13.0, "Hong Kong  Tsuen Wan")
