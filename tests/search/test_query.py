"""Query checks and normalisation: bad queries are refused naming 'q', odd ones find nothing."""

from __future__ import annotations

import re

import pytest

from notefeed.search import SearchError, SearchPipeline
from notefeed.search.text import check_query, normalise


def test_normalise_nfkc_case_space() -> None:
    assert normalise("  ＣＯＦＦＥＥ\t\n  Paris ") == "coffee paris"


@pytest.mark.parametrize("q, msg", [
    ("", "q: empty query"),
    ("   \t ", "q: empty query"),
    ("a" * 10_000, "q: query too long (10000 characters"),
    ("coffee\x00", "q: control or invalid character U+0000 at position 6"),
    ("caf\x1b[31m", "U+001B"),
    ("x\ud800", "U+D800"),
    (None, "q: expected a string"),
    (42, "q: expected a string"),
])
def test_bad_queries_name_the_field(q: object, msg: str) -> None:
    with pytest.raises(SearchError, match=re.escape(msg)):
        check_query(q)


def test_pipeline_refuses_bad_query_and_page(pipe: SearchPipeline) -> None:
    with pytest.raises(SearchError, match="^q: "):
        pipe.search("a" * 10_000)
    for n in (0, -1, 10_000, True, 2.5):
        with pytest.raises(SearchError, match="^n: "):
            pipe.search("coffee", n)  # type: ignore[arg-type]


@pytest.mark.parametrize("q", ["!!!", "?？。、…", "---", "zzzzqqq", "🙂🙂"])
def test_punctuation_or_unknown_finds_nothing(pipe: SearchPipeline, q: str) -> None:
    res = pipe.search(q, 5, explain=True)
    assert res.items.tolist() == []
    assert res.trace is not None


def test_tab_and_newline_are_whitespace(pipe: SearchPipeline) -> None:
    assert pipe.search("espresso\n\tmachine", 3).items[0] == 3
