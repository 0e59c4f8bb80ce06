from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest

from notefeed.search import SearchConfig, SearchPipeline

ROWS = [
    ("n0", "Best coffee in Paris", "latte art and espresso bars near the river", ["coffee", "paris"], "food", "c1"),
    ("n1", "Hiking boots review", "mountain trail test of waterproof boots", ["hiking", "gear"], "outdoors", "c2"),
    ("n2", "今天去上海外滩拍照", "外滩的夜景非常好看，适合拍照", ["旅行", "上海"], "travel", "c3"),
    ("n3", "Espresso machine guide", "choosing an espresso machine for home coffee", ["coffee"], "food", "c1"),
    ("n4", "Camping in the Alps", "tent, stove and a cold night on the mountain", ["camping"], "outdoors", "c2"),
    ("n5", "成都火锅推荐", "好吃的火锅店，麻辣鲜香", ["美食", "成都"], "food", "c4"),
    ("n6", "Skincare routine for winter", "moisturiser and sunscreen every morning", ["skincare"], "beauty", "c5"),
    ("n7", "Paris travel diary", "museums, river walks and bakeries in paris", ["paris", "travel"], "travel", "c6"),
    ("n8", "Trail running shoes", "light shoes for mountain trail running", ["running", "gear"], "outdoors", "c2"),
    ("n9", "Matcha latte at home", "whisk matcha and milk for a green latte", ["tea", "latte"], "food", "c7"),
    ("n10", "Lipstick swatches", "ten red lipstick shades compared", ["makeup"], "beauty", "c5"),
    ("n11", "Tokyo coffee shops", "pour over coffee in tokyo's small cafes", ["coffee", "tokyo"], "travel", "c8"),
]


def make_notes(rows: list[tuple] = ROWS) -> pd.DataFrame:
    return pd.DataFrame({
        "note_id": [r[0] for r in rows], "title": [r[1] for r in rows], "text": [r[2] for r in rows],
        "tags": [r[3] for r in rows], "category": [r[4] for r in rows], "author_id": [r[5] for r in rows],
        "created_at": 0,
    })


@pytest.fixture
def notes() -> pd.DataFrame:
    return make_notes()


@pytest.fixture
def config() -> SearchConfig:
    return SearchConfig(dense_dim=8)


@pytest.fixture
def pipe(notes: pd.DataFrame, config: SearchConfig) -> SearchPipeline:
    return SearchPipeline.build(notes, config)


TOKEN = "search-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
#: two users' likes: a traveller (n2, n11, n7) and a foodie (n3, n5, n9)
TWO_USERS = pd.DataFrame({"user_id": ["traveller"] * 3 + ["foodie"] * 3,
                          "note_id": ["n2", "n11", "n7", "n3", "n5", "n9"], "ts": range(6), "type": "like"})


@contextmanager
def served_search(tmp_path: Path, events: pd.DataFrame, name: str) -> Iterator[tuple]:
    """An engine over :func:`make_notes` and ``events`` (built-in popularity pipeline, write
    token :data:`TOKEN`) and a TestClient of its app; ``(engine, client)``."""
    from fastapi.testclient import TestClient

    from notefeed.data.dataset import Dataset
    from notefeed.serve.app import create_app
    from notefeed.serve.config import builtin_config
    from notefeed.serve.engine import Engine, popular_config

    ds = Dataset.build(name, events, notes=make_notes())
    e = Engine(ds, popular_config(builtin_config().with_overrides(api={"token": TOKEN})), tmp_path / "ws")
    try:
        with TestClient(create_app(e)) as c:
            yield e, c
    finally:
        e.search.close()
        e.close()
