"""The operator console in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver`` packages, driven by selenium with the system binaries; no browser download)
loads every console page from a server on a loopback port over a small simulated workspace,
checks what each page shows, that its charts drew, that the browser log has no errors, and
saves a screenshot of each page (``$NOTEFEED_CONSOLE_SCREENSHOTS`` or the test's tmp dir).

Skipped, saying why, when chromium, chromedriver or selenium is missing (``.ci/run`` installs
them)."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from notefeed.serve.bench import free_port

CHROMIUM = os.environ.get("NOTEFEED_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = os.environ.get("NOTEFEED_CHROMEDRIVER") or shutil.which("chromedriver")
try:
    import selenium  # noqa: F401

    HAVE_SELENIUM = True
except ImportError:  # pragma: no cover - the test extra installs it
    HAVE_SELENIUM = False

pytestmark = [
    pytest.mark.skipif(not CHROMIUM, reason="no chromium binary (apt-get install chromium chromium-driver)"),
    pytest.mark.skipif(not CHROMEDRIVER, reason="no chromedriver (apt-get install chromium-driver)"),
    pytest.mark.skipif(not HAVE_SELENIUM, reason="selenium not installed (pip install -e '.[test]')"),
]

TOKEN = "console-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """``notefeed serve``'s app on a simulated tiny community: reads need the token, an A/B
    experiment runs, two model versions are in the store, and some traffic was served."""
    import httpx
    import uvicorn

    from notefeed.models.store import ModelStore
    from notefeed.serve.abtest import popular_overlay
    from notefeed.serve.app import create_app
    from notefeed.serve.config import ServeConfig, builtin_config
    from notefeed.serve.engine import Engine
    from notefeed.sim import generate

    ws = tmp_path_factory.mktemp("console-ws")
    comm = generate("tiny", seed=0)
    ds = comm.history()
    store = ModelStore(ws)
    v1 = store.save({}, {"metrics": {"note": {"hr@10": 0.1}}})
    store.promote(v1)
    v2 = store.save({}, {"metrics": {"note": {"hr@10": 0.12}}})
    cfg = builtin_config().with_overrides(
        api={"token": TOKEN, "require_token_for_reads": True},
        rerank=ServeConfig().rerank.model_dump(),  # SSD with the small-creator guarantee (a target to chart)
        experiments={"name": "popular-only", "arms": [{"name": "funnel"}, {"name": "popular", "overlay": popular_overlay}]})
    from notefeed.serve.versions import engine_from_store

    engine: Engine = engine_from_store(ds, cfg, ws)
    app = create_app(engine)
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=srv.run, daemon=True)
    th.start()
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    users = ds.users["user_id"].astype(str).tolist()
    assert httpx.get(f"{base}/v1/feed", params={"user_id": users[0]}).status_code == 401  # reads need it
    with httpx.Client(base_url=base, headers=AUTH, timeout=30) as c:
        for u in users[:80]:
            page = c.get("/v1/feed", params={"user_id": u, "n": 10}).json()
            ev = [{"user_id": u, "note_id": it["note_id"], "ts": int(time.time()), "type": "impression"}
                  for it in page["items"]]
            ev.append({"user_id": u, "note_id": page["items"][0]["note_id"], "ts": int(time.time()), "type": "click",
                       "dwell_s": 20.0})
            assert c.post("/v1/events", json={"events": ev}).status_code == 200
        note = {"note_id": "console-new-1", "author_id": "new-creator", "title": "A brand-new note <b>not bold</b>",
                "tags": ["travel"], "category": str(ds.notes["category"].iat[0]), "created_at": int(time.time())}
        assert c.post("/v1/notes", json=note, params={"followers": 12}).status_code == 201
        assert c.get("/v1/search", params={"q": "travel"}).status_code == 200  # the index built (the Search panel)
    try:
        yield {"base": base, "engine": engine, "users": users, "versions": (v1, v2), "new_note": note["note_id"]}
    finally:
        srv.should_exit = True
        th.join(timeout=10)
        engine.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000", "--disable-extensions", "--no-first-run"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=opts)
    drv.set_page_load_timeout(30)
    try:
        yield drv
    finally:
        drv.quit()


def _shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    env = os.environ.get("NOTEFEED_CONSOLE_SCREENSHOTS")
    d = Path(env) if env else tmp_path_factory.mktemp("console-screenshots")
    d.mkdir(parents=True, exist_ok=True)
    return d


def _open(drv: Any, url: str, page: str) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    drv.get(url)
    WebDriverWait(drv, 20).until(lambda d: d.execute_script("return document.body.dataset.ready") == page)


def _errors(drv: Any) -> list[dict[str, Any]]:
    return [e for e in drv.get_log("browser") if e.get("level") == "SEVERE"]


def _drawn(drv: Any, canvas_id: str) -> int:
    """Non-transparent pixels of a canvas (0: nothing drawn)."""
    return int(drv.execute_script(
        "const c = document.getElementById(arguments[0]); if (!c) return -1;"
        "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;"
        "for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n;", canvas_id))


def test_every_console_page_in_chromium(server: dict[str, Any], browser: Any,
                                        tmp_path_factory: pytest.TempPathFactory) -> None:
    from selenium.webdriver.common.by import By

    drv, base = browser, server["base"]
    shots = _shots(tmp_path_factory)
    # reads need the token: the page says so (the 401 it got is the only expected log error)
    _open(drv, f"{base}/console/overview", "overview")
    assert "requires the API token" in drv.find_element(By.ID, "banner").text
    drv.get_log("browser")
    drv.find_element(By.ID, "token").send_keys(TOKEN)
    drv.find_element(By.ID, "token-save").click()
    time.sleep(0.3)
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(drv, 20).until(lambda d: d.execute_script("return document.body.dataset.ready") == "overview"
                                 and not d.execute_script("return document.body.dataset.error"))
    text = drv.find_element(By.TAG_NAME, "main").text
    assert "feed pages / s" in text and "Per-stage latency" in text and "exp:funnel" in text
    assert drv.find_elements(By.XPATH, "//h2[text()='Search']") and "fusion serving" in text  # the search panel
    assert _drawn(drv, "chart-pages") > 0 and _drawn(drv, "chart-stages") > 0
    drv.save_screenshot(str(shots / "overview.png"))
    render = {"overview": int(drv.execute_script("return +document.body.dataset.renderMs"))}

    user = server["users"][0]
    checks = {
        "feed": (f"/console/feed?user_id={user}&n=10", ["Page for " + user, "before re-rank", "recalled by"],
                 ["chart-trace"]),
        "note": (f"/console/note?note_id={server['new_note']}", ["Cold-start pool", "bandit posterior CTR",
                                                                  "Related notes", "<b>not bold</b>"], ["chart-exposure"]),
        "creators": ("/console/creators", ["small-creator target", "50.0%", "Most exposed creators"], ["chart-small", "chart-gini"]),
        "experiments": ("/console/experiments", ["popular-only", "funnel", "popular", "sample ratio", "CTR"],
                        ["chart-diff-popular"]),
        "models": ("/console/models", [*server["versions"], "Serve", "Change the config", "Apply live"], []),
    }
    for page, (path, needles, canvases) in checks.items():
        _open(drv, base + path, page)
        assert not drv.execute_script("return document.body.dataset.error"), page
        text = drv.find_element(By.TAG_NAME, "main").text
        for needle in needles:
            assert needle in text, f"{page}: {needle!r} not on the page"
        for cid in canvases:
            assert _drawn(drv, cid) > 0, f"{page}: chart {cid} drew nothing"
        render[page] = int(drv.execute_script("return +document.body.dataset.renderMs"))
        # `notefeed bench console`'s marker: ms from navigation start to the page's data rendered
        rendered_at = drv.execute_script("return +document.body.dataset.renderedAt")
        assert 0 < rendered_at < drv.execute_script("return performance.now()"), (page, rendered_at)
        drv.save_screenshot(str(shots / f"{page}.png"))
    # the feed inspector: one row per item with its channels; an arm is named
    _open(drv, base + checks["feed"][0], "feed")
    assert len(drv.find_elements(By.CSS_SELECTOR, ".panel table tbody tr")) == 10
    assert any(a in drv.find_element(By.TAG_NAME, "main").text for a in ("funnel", "popular"))
    # models: the config validates with the field named; "Serve" swaps the served version live
    _open(drv, base + "/console/models", "models")
    area = drv.find_element(By.ID, "config-yaml")
    area.clear()
    area.send_keys("rerank: {windw: 3}")
    drv.find_element(By.ID, "validate").click()
    WebDriverWait(drv, 10).until(lambda d: "rerank.windw" in d.find_element(By.ID, "config-result").text)
    _config_editor(drv, base, server["engine"], shots)
    # "Serve" swaps the version in live and promotes it in the model store; "Roll back" undoes both
    from notefeed.models.store import ModelStore

    store = ModelStore(server["engine"].workspace)
    v1, v2 = server["versions"]
    assert server["engine"].model_version == v1 and store.promoted() == v1
    _open(drv, base + "/console/models", "models")
    assert not drv.find_elements(By.CSS_SELECTOR, f'button.promote[data-version="{v1}"]')  # served and promoted
    drv.find_element(By.CSS_SELECTOR, f'button.promote[data-version="{v2}"]').click()
    WebDriverWait(drv, 30).until(lambda d: d.execute_script("return document.body.dataset.action") == f"promoted {v2}")
    assert server["engine"].model_version == v2 and store.promoted() == v2
    _open(drv, base + "/console/models", "models")
    assert v2 in drv.find_element(By.CSS_SELECTOR, ".cards").text  # the served version
    drv.find_element(By.CSS_SELECTOR, f'button.rollback[data-version="{v1}"]').click()
    WebDriverWait(drv, 30).until(lambda d: d.execute_script("return document.body.dataset.action") == f"rolled back {v1}")
    assert server["engine"].model_version == v1 and store.promoted() == v1
    # the note inspector takes a note down (DELETE /v1/notes/{id}) and then says so
    note, eng = server["new_note"], server["engine"]
    _open(drv, f"{base}/console/note?note_id={note}", "note")
    drv.find_element(By.ID, "remove-reason").send_keys("reported")
    drv.find_element(By.ID, "remove-note").click()
    WebDriverWait(drv, 10).until(lambda d: d.switch_to.alert).accept()  # "Take ... down?"
    WebDriverWait(drv, 20).until(lambda d: d.execute_script(  # the page reloads: no element held across it
        "const c = document.querySelector('.cards'); return document.body.dataset.ready === 'note' && !!c"
        " && c.textContent.includes('removed')"))
    assert "(reported)" in drv.find_element(By.CSS_SELECTOR, ".cards").text
    assert not drv.find_elements(By.ID, "remove-note")
    assert eng.catalog.is_removed([eng.catalog.item_of(note)]).tolist() == [True]
    # ... and restores it (POST /v1/notes/{id}/restore): live again, the undone takedown listed
    drv.find_element(By.ID, "restore-reason").send_keys("appeal granted")
    drv.find_element(By.ID, "restore-note").click()
    WebDriverWait(drv, 10).until(lambda d: d.switch_to.alert).accept()  # "Restore ...?"
    WebDriverWait(drv, 20).until(lambda d: d.execute_script(
        "const c = document.querySelector('.cards'); return document.body.dataset.ready === 'note' && !!c"
        " && c.textContent.includes('live')"))
    assert "appeal granted" in drv.find_element(By.TAG_NAME, "main").text and drv.find_elements(By.ID, "remove-note")
    assert eng.catalog.is_removed([eng.catalog.item_of(note)]).tolist() == [False]
    # the feed inspector erases a user (DELETE /v1/users/{id}): the card says so, the list drops them
    listed = "return [...document.querySelectorAll('#user-list option')].map((o) => o.value)"
    _open(drv, f"{base}/console/feed", "feed")
    gone = next(u for u in drv.execute_script(listed) if u != server["users"][0])  # an active one, listed
    _open(drv, f"{base}/console/feed?user_id={gone}&n=10", "feed")
    drv.find_element(By.ID, "erase-user").click()
    WebDriverWait(drv, 10).until(lambda d: d.switch_to.alert).accept()  # "Erase ...?"
    WebDriverWait(drv, 20).until(lambda d: d.execute_script(
        "const c = document.querySelector('.cards'); return document.body.dataset.ready === 'feed' && !!c"
        " && c.textContent.includes('erased')"))
    assert eng.erased_at(gone) is not None
    assert gone not in drv.execute_script(listed)
    errors = _errors(drv)
    assert errors == [], f"browser console errors: {errors}"
    assert max(render.values()) < 1000, f"render ms per page: {render}"


def _config_editor(drv: Any, base: str, engine: Any, shots: Path) -> None:
    """Validate (a dry run) and apply a hot change from the editor; a cold change is refused
    naming the field. The running config is restored afterwards (the module's server is shared)."""
    import yaml
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _open(drv, base + "/console/models", "models")
    area = drv.find_element(By.ID, "config-yaml")
    doc = yaml.safe_load(area.get_attribute("value"))  # the running config, without the token
    assert "token" not in doc["api"]
    original = yaml.safe_dump(doc)
    old_click = engine.config.fusion.weights["click"]

    def submit(text: str, button: str, state: str) -> str:
        drv.execute_script("arguments[0].value = arguments[1]; delete document.getElementById('config-result')"
                           ".dataset.state;", area, text)
        drv.find_element(By.ID, button).click()
        WebDriverWait(drv, 20).until(lambda d: d.find_element(By.ID, "config-result").get_attribute("data-state"))
        out = drv.find_element(By.ID, "config-result")
        assert out.get_attribute("data-state") == state, out.text
        return str(out.text)

    doc["fusion"]["weights"]["click"] = old_click + 1.5
    hot = yaml.safe_dump(doc)
    text = submit(hot, "validate", "valid")
    assert "fusion" in text and "fusion.weights.click" in text and "live" in text
    drv.execute_script("document.getElementById('config-result').scrollIntoView()")
    drv.save_screenshot(str(shots / "models-config-validated.png"))
    assert engine.config.fusion.weights["click"] == old_click  # a dry run
    text = submit(hot, "apply", "applied")
    assert engine.config.fusion.weights["click"] == old_click + 1.5
    assert f'"click": {old_click + 1.5}' in drv.find_element(By.ID, "config").text  # the running config shown
    assert _errors(drv) == []
    doc["page"]["max_size"] = 50
    text = submit(yaml.safe_dump(doc), "apply", "error")
    assert "409" in text and "page.max_size" in text and "restart" in text
    # the refused change's 409 is the one (expected) entry in the browser log
    assert [("/v1/admin/config" in e["message"], "409" in e["message"]) for e in _errors(drv)] == [(True, True)]
    assert engine.config.page.max_size != 50
    submit(original, "apply", "applied")
    assert engine.config.fusion.weights["click"] == old_click
