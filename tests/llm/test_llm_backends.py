"""Backends (a) HTTP against a real OpenAI-protocol server over (c) the built-in model, (b) local folders."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import numpy as np
import pytest

from notefeed.llm import (
    BACKENDS,
    Budget,
    BudgetExceeded,
    BuiltinLM,
    HttpLM,
    LanguageModel,
    LLMError,
    open_backend,
)
from notefeed.llm.cache import DiskCache, cache_key
from notefeed.llm.server import create_openai_app
from notefeed.llm.tokenizer import Tokenizer
from tests.tiny_models import tiny_sentence_transformer


def test_registry_and_protocol(builtin):
    assert {"llm/builtin", "llm/http", "llm/local"} <= set(BACKENDS.names())
    assert isinstance(builtin, LanguageModel)


def test_tokenizer_round_trip_and_char_fallback(tmp_path):
    tok = Tokenizer.build(["coffee coffee shop", "上海 上海"], min_count=2)
    ids = tok.encode("Coffee [TITLE] shoppe 上")
    assert tok.vocab[ids[1]] == "[TITLE]"
    assert tok.decode(ids) == "coffee shoppe 上"
    tok.save(tmp_path / "t.json")
    assert Tokenizer.load(tmp_path / "t.json").vocab == tok.vocab
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(LLMError, match="bad.json"):
        Tokenizer.load(tmp_path / "bad.json")


def test_builtin_embed_generate_tags_and_save(builtin, corpus, tmp_path):
    texts = corpus.texts()
    z = builtin.embed(texts)
    assert z.shape == (len(texts), 16) and z.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    # same-topic pairs were the positives: a note is closer to its topic than to the others
    sim = z @ z.T
    topic = np.arange(len(texts)) % 3
    same = (topic[:, None] == topic[None, :]) & ~np.eye(len(texts), dtype=bool)
    assert sim[same].mean() > sim[topic[:, None] != topic[None, :]].mean() + 0.2
    out = builtin.generate(["espresso latte [TITLE]", "trail boots [TITLE]"], 4, stop=["[TAGS]"])
    assert len(out) == 2 and all(isinstance(o, str) for o in out)
    tags = builtin.predict_tags(corpus.texts(with_tags=False)[:3], k=2)
    assert [t[0][0] for t in tags] == ["coffee", "hiking", "baking"]
    builtin.save(tmp_path / "m")
    again = BuiltinLM.load(tmp_path / "m")
    np.testing.assert_allclose(again.embed(texts[:4]), z[:4], atol=1e-5)
    assert again.generate(["espresso latte [TITLE]"], 4, stop=["[TAGS]"]) == out[:1]
    assert isinstance(open_backend(f"builtin:{tmp_path / 'm'}"), BuiltinLM)
    (tmp_path / "m" / "config.json").write_text("{}")
    with pytest.raises(LLMError, match="kind"):
        BuiltinLM.load(tmp_path / "m")
    with pytest.raises(LLMError, match="prompts"):
        builtin.generate("not a list")


@pytest.fixture(scope="module")
def server(builtin):
    import uvicorn

    app = create_openai_app(builtin)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=srv.run, daemon=True)
    th.start()
    t0 = time.time()
    while not srv.started and time.time() - t0 < 10:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}/v1", app
    srv.should_exit = True
    th.join(5)


def test_http_backend_against_a_real_server(server, builtin, corpus, tmp_path):
    url, app = server
    lm = HttpLM(url, batch_size=7, cache=tmp_path / "cache.sqlite")
    texts = corpus.texts()[:20]
    z = lm.embed(texts)
    np.testing.assert_allclose(z, builtin.embed(texts), atol=1e-5)
    assert app.state.calls["embeddings"] == 3  # 20 texts in batches of 7
    prompts = ["espresso latte [TITLE]", "trail boots [TITLE]"]
    want = builtin.generate(prompts, 4, stop=["[TAGS]"])
    assert lm.generate(prompts, 4, stop=["[TAGS]"]) == want
    assert app.state.calls["chat"] == 2
    # the disk cache answers a rerun (another client, same file) without a request
    again = HttpLM(url, batch_size=7, cache=tmp_path / "cache.sqlite", api="chat")
    np.testing.assert_allclose(again.embed(texts), z, atol=1e-6)
    assert again.generate(prompts, 4, stop=["[TAGS]"]) == want and again.requests == 0
    batch = HttpLM(url, api="completions")
    assert batch.generate(prompts, 4, stop=["[TAGS]"]) == want and batch.requests == 1
    with pytest.raises(BudgetExceeded, match="max_requests"):
        HttpLM(url, batch_size=1, budget=Budget(max_requests=2)).embed(texts[:3])


def test_http_retries_with_backoff_then_fails_clearly():
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] < 3:
            return httpx.Response(503, text="busy")
        return httpx.Response(200, json={"data": [{"index": 0, "embedding": [3.0, 4.0]}]})

    lm = HttpLM("http://llm.test/v1", retries=3, backoff_s=0.001, transport=httpx.MockTransport(handler))
    np.testing.assert_allclose(lm.embed(["x"]), [[0.6, 0.8]], atol=1e-6)
    assert lm.retried == 2
    bad = HttpLM("http://llm.test/v1", retries=1, backoff_s=0.001,
                 transport=httpx.MockTransport(lambda r: httpx.Response(400, text="no such model")))
    with pytest.raises(LLMError, match="HTTP 400"):
        bad.generate(["x"])
    dead = HttpLM("http://llm.test/v1", retries=1, backoff_s=0.001,
                  transport=httpx.MockTransport(lambda r: (_ for _ in ()).throw(httpx.ConnectError("refused"))))
    with pytest.raises(LLMError, match="after 2 attempts"):
        dead.embed(["x"])
    with pytest.raises(LLMError, match="base_url"):
        HttpLM("ftp://x")


def test_disk_cache_is_json_in_sqlite(tmp_path):
    c = DiskCache(tmp_path / "c.sqlite")
    k = cache_key("embed", "m", "hello")
    assert c.get(k) is None
    c.put(k, [1.0, 2.0])
    assert DiskCache(tmp_path / "c.sqlite").get(k) == [1.0, 2.0] and len(c) == 1
    assert cache_key("embed", "m", "hello", {"t": 1}) != k


st = pytest.importorskip("sentence_transformers")
transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tiny_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("local")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "coffee", "tea", "paris", "london", "shop"]
    _, tok = tiny_sentence_transformer(root, vocab)
    gcfg = transformers.GPT2Config(vocab_size=len(vocab), n_embd=16, n_layer=1, n_head=2, n_positions=64,
                                   bos_token_id=2, eos_token_id=3, pad_token_id=0)
    transformers.GPT2LMHeadModel(gcfg).save_pretrained(root / "gpt")
    tok.save_pretrained(root / "gpt")
    return root


def test_local_folders_embed_and_generate(tiny_folders):
    lm = open_backend(f"local:{tiny_folders / 'st'}")
    z = lm.embed(["coffee paris", "tea london"])
    assert z.shape == (2, 16)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    with pytest.raises(LLMError, match="no causal LM"):
        lm.generate(["coffee"])
    gen = BACKENDS.create("llm/local", path=tiny_folders / "st", generator=tiny_folders / "gpt")
    out = gen.generate(["coffee paris"], max_tokens=3)
    assert len(out) == 1 and isinstance(out[0], str)
    alone = open_backend(f"local:{tiny_folders / 'gpt'}")
    assert alone.embed(["coffee", "tea shop"]).shape == (2, 16)
    with pytest.raises(LLMError, match="path"):
        open_backend(f"local:{tiny_folders}")
