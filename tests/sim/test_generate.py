import numpy as np
import pandas as pd

from notefeed.data.dataset import Dataset
from notefeed.schema import EVENT_TYPES
from notefeed.sim.community import generate


def test_same_seed_same_dataset_different_seed_differs(tiny_history):
    again = generate("tiny", seed=0).history()
    pd.testing.assert_frame_equal(tiny_history.notes, again.notes)
    pd.testing.assert_frame_equal(tiny_history.events, again.events)
    pd.testing.assert_frame_equal(tiny_history.creators, again.creators)
    other = generate("tiny", seed=1).history()
    assert not tiny_history.notes["text"].equals(other.notes["text"])
    assert len(tiny_history.events) != len(other.events) or not tiny_history.events["item"].equals(
        other.events["item"])


def test_followers_are_power_law(tiny):
    for comm in (tiny, generate("demo", seed=3)):
        f = np.sort(comm.world.creator_followers)[::-1]
        assert (f < 1000).mean() > 0.5  # most creators are small
        top = max(1, len(f) // 10)
        assert f[:top].sum() > 0.5 * f.sum()  # the biggest tenth hold most followers


def test_history_validates_and_has_every_event_type(tiny_history):
    ds = tiny_history
    assert isinstance(ds, Dataset)
    ds.validate()
    counts = ds.events["type"].value_counts()
    for t in EVENT_TYPES:
        assert counts[t] > 0, t
    ev = ds.events
    assert ev["user"].dtype == np.int32 and ev["item"].dtype == np.int32 and ev["ts"].dtype == np.int64
    assert ev["dwell_s"].dtype == np.float32 and ev["position"].dtype == np.int32
    assert list(ev["type"].cat.categories) == list(EVENT_TYPES)
    assert str(ev["request_id"].dtype) == "string"
    assert (np.diff(ev["ts"].to_numpy()) >= 0).all()
    # realistic funnel: like > collect > comment > share
    assert counts["click"] > counts["like"] > counts["collect"] > counts["comment"] > counts["share"]
    # dwell only on clicks, always positive
    clicks = ev[ev["type"] == "click"]
    assert clicks["dwell_s"].notna().all() and (clicks["dwell_s"] > 0).all()
    assert ev.loc[ev["type"] == "impression", "dwell_s"].isna().all()
    # nothing is shown before it was created
    imp = ev[ev["type"] == "impression"]
    created = ds.notes["created_at"].to_numpy()[imp["item"].to_numpy()]
    assert (created <= imp["ts"].to_numpy()).all()


def test_catalogue_text_tags_and_attributes(tiny, tiny_history):
    notes = tiny_history.notes
    assert notes["note_id"].is_unique and (notes["title"].str.len() > 0).all()
    assert all(1 <= len(t) <= 5 and len(set(t)) == len(t) for t in notes["tags"])
    # the category is the dominant topic and the text draws on that topic's words
    vocab = tiny.world.vocab
    topics = tiny.world.note_topic
    assert (notes["category"].to_numpy() == np.array(vocab.topic_names)[topics]).all()
    latin = ~tiny.world.note_zh
    hits = [
        len(set(text.split()) & set(vocab.words[t].tolist())) > 0
        for text, t in zip(notes["text"][latin], topics[latin], strict=True)
    ]
    assert np.mean(hits) > 0.95
    assert tiny.world.note_zh.any()  # some Chinese notes for the jieba paths
    zh_text = notes["text"][tiny.world.note_zh].iloc[0]
    assert any("\u4e00" <= ch <= "\u9fff" for ch in zh_text)
    assert {"age", "gender", "city"} <= set(tiny_history.users.columns)
    assert tiny_history.social is not None and len(tiny_history.social) > 0


def test_position_bias_lowers_ctr_in_logs(tiny_history):
    ev = tiny_history.events
    imp = ev[ev["type"] == "impression"].groupby("position").size()
    clk = ev[ev["type"] == "click"].groupby("position").size()
    ctr = (clk / imp).to_numpy()
    assert ctr[0] > 1.5 * ctr[-1]


def test_simulate_log_size_and_validity(tiny):
    ds = tiny.simulate_log(200_000, seed=5)
    ds.validate()
    assert 150_000 < len(ds.events) < 250_000
    assert "request_id" not in ds.events.columns
