"""Bad input for every loader: tiny valid folders written in tmp_path, then corrupted.

These do not need the shared datasets: each folder mimics the public file format in a few lines.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from notefeed.data.dataset import DataError
from notefeed.data.loaders import DATASET_NAMES, load_dataset

QILIN_REC = (
    "recent_clicked_note_idxs,rec_result_details_with_idx,request_idx,session_idx,user_idx\n"
    '"[ 11  12\n 13]","[{\'click\': 1, \'collect\': 0, \'comment\': 0, \'like\': 1, \'note_id\': \'ab\', '
    "'note_idx': 5, 'page_time': 2.5, 'position': 1, 'request_timestamp': 1732668760025, 'share': 0}\n"
    " {'click': 0, 'collect': 0, 'comment': 0, 'like': 0, 'note_id': 'cd', 'note_idx': 0, "
    "'page_time': 0.0, 'position': 2, 'request_timestamp': 1732668760026, 'share': 0}]\",7,8,9\n"
)
QILIN_NOTES = (
    "note_title,note_content,taxonomy1_id,taxonomy2_id,taxonomy3_id,like_num,note_idx,image_path\n"
    "t0,hello #猫[话题]# x,tx1,tx2,nan,3.0,0,\"['a.jpg' 'b.jpg'\n 'c.jpg']\"\n"
)

#: name -> {file: text} of a minimal valid folder.
FOLDERS: dict[str, dict[str, str]] = {
    "movielens-small": {
        "ratings.csv": "userId,movieId,rating,timestamp\n1,10,4.0,100\n2,10,2.5,200\n",
        "movies.csv": "movieId,title,genres\n10,A (1990),Drama|Comedy\n11,B (1991),(no genres listed)\n",
        "tags.csv": "userId,movieId,tag,timestamp\n1,10,Funny,150\n",
    },
    "movielens-100k": {
        "u.data": "1\t10\t5\t100\n2\t10\t3\t200\n",
        "u.genre": "unknown|0\nDrama|1\n\n",
        "u.item": "10|A (1990)|01-Jan-1990||http://x|0|1\n",
        "u.user": "1|24|M|technician|85711\n2|53|F|other|94043\n",
    },
    "taobao": {"UserBehavior.csv": "1,10,5,pv,1511544070\n1,11,5,buy,1511544080\n2,10,5,fav,1511544090\n"},
    "beauty": {"Beauty.txt": "1 1 2 3\n2 2 3\n", "Beauty_item2attributes.json": '{"1": [7, 8], "2": [9]}'},
    "lastfm-s3rec": {"LastFM.txt": "1 1 2\n2 2 1\n", "LastFM_item2attributes.json": '{"1": [1, 1, 2]}'},
    "kuairec": {
        "kuairec_caption_category.csv": (
            "video_id,manual_cover_text,caption,topic_tag,first_level_category_id,first_level_category_name,"
            "second_level_category_id,second_level_category_name,third_level_category_id,third_level_category_name\n"
            "0,UNKNOWN,cap\rtion,\"[a,b]\",8,颜值,673,随拍,-124,UNKNOWN\n"
        ),
        "item_categories.csv": 'video_id,feat\n0,"[8, 9]"\n',
    },
    "kuairand": {
        "video_features_basic_pure.csv": "video_id,author_id,upload_dt,tag\n0,5,2022-04-10,\"39,2\"\n1,77,2022-04-11,1\n",
        "user_features_pure.csv": "user_id,is_video_author,fans_user_num\n5,1,1500\n77,0,99\n",
    },
    "microlens": {
        "MicroLens-100k_title_en.csv": "1, a title, with comma\n2, b\n",
        "video_comment_counts.csv": "\ufeffvideo_id,comment_count\n1,4\n",
    },
    "lastfm-hetrec": {
        "user_artists.dat": "2\t51\t13883\n2\t52\t  11690\n3\t51\t5\n",
        "artists.dat": "id\tname\turl\tpictureURL\n51\tAbba\thttp://a\thttp://p\n52\tBeck\thttp://b\thttp://q\n",
        "user_friends.dat": "userID\tfriendID\n2\t3\n3\t2\n",
    },
    "qilin": {"notes.csv": QILIN_NOTES, "recommendation_train.csv": QILIN_REC},
}


def _write(tmp: Path, name: str, edit: Callable[[dict[str, str]], None] | None = None) -> Path:
    files = dict(FOLDERS[name])
    if edit is not None:
        edit(files)
    for fname, text in files.items():
        (tmp / fname).write_text(text, encoding="utf-8")
    return tmp


def test_fixture_folders_cover_every_dataset():
    assert set(FOLDERS) == set(DATASET_NAMES)


@pytest.mark.parametrize("name", sorted(FOLDERS))
def test_minimal_folder_loads(tmp_path, name):
    ds = load_dataset(name, _write(tmp_path, name))
    assert ds.n_items >= 1
    ds.validate()


def test_minimal_values(tmp_path):
    (tmp_path / "a").mkdir()
    ml = load_dataset("movielens-small", _write(tmp_path / "a", "movielens-small"))
    assert ml.stats()["events_by_type"] == {"click": 2, "like": 1}
    assert ml.notes.iloc[0]["tags"] == ["Drama", "Comedy", "funny"] and ml.notes.iloc[1]["category"] == ""
    (tmp_path / "q").mkdir()
    q = load_dataset("qilin", _write(tmp_path / "q", "qilin"))
    assert q.notes.iloc[0]["media"] == ["a.jpg", "b.jpg", "c.jpg"] and q.notes.iloc[0]["tags"] == ["猫"]
    assert q.meta["requests"].iloc[0]["recent_clicked"] == ["11", "12", "13"]
    assert q.stats()["events_by_type"] == {"impression": 2, "click": 1, "like": 1}
    click = q.events[q.events["type"] == "click"]
    assert click["dwell_s"].tolist() == [2.5] and click["ts"].tolist() == [1732668760]
    (tmp_path / "k").mkdir()
    kr = load_dataset("kuairand", _write(tmp_path / "k", "kuairand"))
    assert kr.creators.set_index("creator_id")["followers"].to_dict() == {"5": 1500, "77": 0}  # 77 is no author
    (tmp_path / "m").mkdir()
    ml2 = load_dataset("microlens", _write(tmp_path / "m", "microlens"))
    assert ml2.notes["title"].tolist() == ["a title, with comma", "b"]


@pytest.mark.parametrize("name", sorted(FOLDERS))
def test_missing_folder_names_expected_file(tmp_path, name):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nope")):
        load_dataset(name, tmp_path / "nope")


def _sub(file: str, old: str, new: str) -> Callable[[dict[str, str]], None]:
    def edit(files: dict[str, str]) -> None:
        assert old in files[file], (file, old)
        files[file] = files[file].replace(old, new, 1)

    return edit


# (dataset, edit, regex the DataError must match: file, line and field where they exist)
BAD = [
    ("movielens-small", _sub("ratings.csv", "rating,", "score,"), r"ratings.csv: missing column 'rating'"),
    ("movielens-small", _sub("ratings.csv", "2,10,2.5", "2,10,abc"), r"ratings.csv:3: field 'rating'"),
    ("movielens-small", _sub("ratings.csv", "1,10,4.0,100", "1,10,4.0,100,7,8"), r"ratings.csv:2: malformed line: expected 4 fields, found 6"),
    ("movielens-100k", _sub("u.data", "2\t10\t3\t200", "2\tX\t3\t200"), r"u.data:2: field 'item'"),
    ("movielens-100k", _sub("u.user", "1|24|", "1|old|"), r"u.user:1: field 'age'"),
    ("movielens-100k", _sub("u.item", "|0|1\n", "|0|7\n"), r"u.item:1: field 'Drama'"),
    ("taobao", _sub("UserBehavior.csv", "buy", "steal"), r"UserBehavior.csv:2: field 'behavior'"),
    ("taobao", _sub("UserBehavior.csv", "1511544080", "soon"), r"UserBehavior.csv:2: field 'ts'"),
    ("taobao", _sub("UserBehavior.csv", "1,10,5,pv,1511544070\n", "1,10,5,pv\n"), r"UserBehavior.csv:1: field 'ts'"),
    ("beauty", _sub("Beauty.txt", "2 2 3", "2 2 x3"), r"Beauty.txt:2: field 'items'"),
    ("beauty", _sub("Beauty.txt", "2 2 3", "2"), r"Beauty.txt:2: .*no items"),
    ("beauty", _sub("Beauty_item2attributes.json", "}", ""), r"Beauty_item2attributes.json: not valid JSON"),
    ("lastfm-s3rec", _sub("LastFM_item2attributes.json", "[1, 1, 2]", '"x"'), r"item '1': field 'attributes'"),
    ("kuairec", _sub("kuairec_caption_category.csv", "caption,", "text,"), r"missing column 'caption'"),
    ("kuairec", _sub("kuairec_caption_category.csv", "\n0,", "\nzero,"), r"kuairec_caption_category.csv:2: field 'video_id'"),
    ("kuairec", _sub("item_categories.csv", "[8, 9]", "[8, x]"), r"item_categories.csv:2: field 'feat'"),
    ("kuairand", _sub("video_features_basic_pure.csv", "2022-04-11", "11/04/2022"), r"csv:3: field 'upload_dt'"),
    ("kuairand", _sub("video_features_basic_pure.csv", ",77,", ",seventy,"), r"csv:3: field 'author_id'"),
    ("microlens", _sub("MicroLens-100k_title_en.csv", "2, b", "no comma here"), r"title_en.csv:2: malformed line"),
    ("microlens", _sub("video_comment_counts.csv", "1,4", "1,many"), r"counts.csv:2: field 'comment_count'"),
    ("lastfm-hetrec", _sub("user_artists.dat", "3\t51\t5", "3\t51"), r"user_artists.dat:3: malformed line"),
    ("lastfm-hetrec", _sub("user_artists.dat", "3\t51\t5", "3\tfoo\t5"), r"user_artists.dat:3: field 'artist'"),
    ("qilin", _sub("recommendation_train.csv", "'note_idx': 5,", "'note_idx': 'x5',"), r"record 0: missing or non-numeric"),
    ("qilin", _sub("recommendation_train.csv", "[ 11  12", "[ 11  1x2"), r"row 2: field 'recent_clicked_note_idxs'"),
    ("qilin", _sub("recommendation_train.csv", "user_idx\n", "user\n"), r"missing column 'user_idx'"),
    ("qilin", _sub("notes.csv", "\"['a.jpg'", "\"'a.jpg'"), r"notes.csv: row 2: field 'image_path'"),
]


@pytest.mark.parametrize("name,edit,pattern", BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_bad_input_names_file_line_field(tmp_path, name, edit, pattern):
    folder = _write(tmp_path, name, edit)
    with pytest.raises(DataError, match=pattern):
        load_dataset(name, folder)


def test_bad_input_covers_every_loader():
    assert {b[0] for b in BAD} == set(DATASET_NAMES)
