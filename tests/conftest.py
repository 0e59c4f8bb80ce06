"""Fixtures shared by several test packages."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from hypothesis import settings

from notefeed.serve.bench_online import redis_server

# no per-example time limit: property tests check behaviour, and on a loaded 2-core box one
# example of a 0.06 ms property took 272 ms (timing targets live in benchmarks)
settings.register_profile("notefeed", deadline=None)
settings.load_profile("notefeed")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``$NOTEFEED_TEST_REDIS_URL`` (CI), else a private ``redis-server`` on a free port,
    else skip. One server for the session: tests keep their keys apart (prefixes, flushdb)."""
    url = os.environ.get("NOTEFEED_TEST_REDIS_URL")
    if url:
        yield url
        return
    if shutil.which("redis-server") is None:
        pytest.skip("no NOTEFEED_TEST_REDIS_URL and no redis-server binary")
    try:
        url, proc = redis_server(None, tmp_path_factory.mktemp("redis"))
    except RuntimeError:
        pytest.skip("redis-server did not start")
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[object]:
    import redis

    r = redis.Redis.from_url(redis_url, decode_responses=True)
    r.flushdb()
    yield r
    r.flushdb()
    r.close()
