"""Schema-driven fuzzing of the whole OpenAPI surface (schemathesis, in-process ASGI): no
generated request gets a 5xx, and the workspace the fuzzer wrote into still starts. The search
index is built before fuzzing: while it builds, search deliberately answers 503 + Retry-After
(the one 5xx the API gives on purpose), which is not what the fuzzer probes.

``NOTEFEED_FUZZ_EXAMPLES`` sets the examples per operation (default 25: a quick run; issue 12's
target of 10,000 requests is ``NOTEFEED_FUZZ_EXAMPLES=800``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402

from notefeed.data.dataset import Dataset  # noqa: E402
from notefeed.serve.app import create_app  # noqa: E402
from notefeed.serve.engine import Engine  # noqa: E402

from .conftest import AUTH, make_config  # noqa: E402

EXAMPLES = int(os.environ.get("NOTEFEED_FUZZ_EXAMPLES", "25"))
SERVED: dict[str, Any] = {}


@pytest.fixture(scope="module")
def fuzz_engine(small_ds: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    ws = tmp_path_factory.mktemp("fuzz") / "ws"
    eng = Engine(small_ds, make_config(api={"max_body_bytes": 200_000}), ws)
    SERVED.update(ds=small_ds, ws=ws, config=eng.config)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def api_schema(fuzz_engine: Engine) -> Any:
    app = create_app(fuzz_engine)
    fuzz_engine.search.start()
    assert fuzz_engine.search.wait(120), fuzz_engine.search.error
    return schemathesis.openapi.from_asgi("/openapi.json", app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_5xx(case: Any) -> None:
    response = case.call(headers=AUTH)
    assert response.status_code < 500, \
        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}\n{case.as_curl_command()}"


def test_restart_after_fuzzing(fuzz_engine: Engine) -> None:
    """Whatever the fuzzer got accepted, a new engine on the same workspace starts on it."""
    if not SERVED:
        pytest.skip("the fuzzing engine did not run")
    n_items, n_events = fuzz_engine.catalog.n_items, fuzz_engine.bus.count()
    eng = Engine(SERVED["ds"], SERVED["config"], Path(SERVED["ws"]))
    try:
        assert eng.catalog.n_items == n_items and eng.replayed == n_events
    finally:
        eng.reloader.close()
        eng.models.close()
        eng._close_io()
