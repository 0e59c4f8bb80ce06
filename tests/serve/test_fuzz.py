"""Schema-driven fuzzing of the whole OpenAPI surface (schemathesis, in-process ASGI): no
generated request gets a 5xx, and the workspace the fuzzer wrote into still starts. The search
index is built before fuzzing: while it builds, search deliberately answers 503 + Retry-After
(the one 5xx the API gives on purpose), which is not what the fuzzer probes.

``NOTEFEED_FUZZ_EXAMPLES`` sets the examples per operation (default 25: a quick run; issue 12's
target of 10,000 requests: ``NOTEFEED_FUZZ_EXAMPLES=800``, since hypothesis stops early on small
operations). With ``NOTEFEED_FUZZ_JSON=path`` the run writes its
tally there: requests per operation and status class, the 5xx count, whether the restart on the
fuzzed workspace succeeded (``docs/results/serve/fuzz.json`` is written that way).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
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
#: (operation, status class) -> generated requests, for NOTEFEED_FUZZ_JSON
TALLY: Counter[tuple[str, str]] = Counter()
STARTED = time.time()


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
    TALLY[(case.operation.label, f"{response.status_code // 100}xx")] += 1
    assert response.status_code < 500, \
        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}\n{case.as_curl_command()}"


def test_restart_after_fuzzing(fuzz_engine: Engine) -> None:
    """Whatever the fuzzer got accepted, a new engine on the same workspace starts on it."""
    if not SERVED:
        pytest.skip("the fuzzing engine did not run")
    n_items, n_events = fuzz_engine.catalog.n_items, fuzz_engine.bus.count()
    eng = Engine(SERVED["ds"], SERVED["config"], Path(SERVED["ws"]))
    try:
        restarted = eng.catalog.n_items == n_items and eng.replayed == n_events
        _write_tally(restarted, n_items, n_events)
        assert restarted
    finally:
        eng.reloader.close()
        eng.models.close()
        eng._close_io()


def _write_tally(restarted: bool, n_items: int, n_events: int) -> None:
    """NOTEFEED_FUZZ_JSON: what the run generated and got back."""
    path = os.environ.get("NOTEFEED_FUZZ_JSON")
    if not path:
        return
    ops: dict[str, dict[str, int]] = {}
    for (op, cls), n in sorted(TALLY.items()):
        ops.setdefault(op, {})[cls] = n
    by_class = Counter()
    for (_, cls), n in TALLY.items():
        by_class[cls] += n
    out = {"command": f"NOTEFEED_FUZZ_EXAMPLES={EXAMPLES} NOTEFEED_FUZZ_JSON={path} "
                      "python3 -m pytest tests/serve/test_fuzz.py",
           "examples_per_operation": EXAMPLES, "operations": len(ops), "requests": sum(TALLY.values()),
           "responses_5xx": by_class.get("5xx", 0), "by_status_class": dict(sorted(by_class.items())),
           "restart_ok": bool(restarted), "notes_after": n_items, "events_after": n_events,
           "wall_s": time.time() - STARTED, "by_operation": ops}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(out, indent=1))
