"""An OpenAI-compatible HTTP face for any :class:`LanguageModel` (``notefeed llm serve``).

``POST /v1/embeddings``, ``/v1/completions`` and ``/v1/chat/completions`` (the messages'
contents joined are the prompt), ``GET /v1/models``. Enough of the protocol for
:class:`~notefeed.llm.http.HttpLM` and common clients; no streaming.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from notefeed.llm.base import LanguageModel, LLMError

__all__ = ["create_openai_app"]


class _Embeddings(BaseModel):
    model: str = "default"
    input: str | list[str]


class _Message(BaseModel):
    role: str = "user"
    content: str


class _Chat(BaseModel):
    model: str = "default"
    messages: list[_Message] = Field(min_length=1)
    max_tokens: int = Field(32, ge=1, le=4096)
    temperature: float = Field(0.0, ge=0.0, le=5.0)
    stop: str | list[str] | None = None


class _Completions(BaseModel):
    model: str = "default"
    prompt: str | list[str]
    max_tokens: int = Field(32, ge=1, le=4096)
    temperature: float = Field(0.0, ge=0.0, le=5.0)
    stop: str | list[str] | None = None


def _stops(stop: str | list[str] | None) -> list[str] | None:
    return [stop] if isinstance(stop, str) else stop


def create_openai_app(lm: LanguageModel, model_name: str = "notefeed-builtin") -> FastAPI:
    app = FastAPI(title="notefeed llm", docs_url=None, redoc_url=None)
    app.state.calls = {"embeddings": 0, "completions": 0, "chat": 0}

    def _run(fn: Any, *args: Any, **kw: Any) -> Any:
        try:
            return fn(*args, **kw)
        except LLMError as e:
            raise HTTPException(422, str(e)) from None

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model_name, "object": "model", "owned_by": "notefeed"}]}

    @app.post("/v1/embeddings")
    def embeddings(req: _Embeddings) -> dict[str, Any]:
        app.state.calls["embeddings"] += 1
        texts = [req.input] if isinstance(req.input, str) else req.input
        z = _run(lm.embed, texts)
        return {"object": "list", "model": model_name,
                "data": [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(z)]}

    @app.post("/v1/completions")
    def completions(req: _Completions) -> dict[str, Any]:
        app.state.calls["completions"] += 1
        prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
        outs = _run(lm.generate, prompts, req.max_tokens, temperature=req.temperature, stop=_stops(req.stop))
        return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
                "model": model_name,
                "choices": [{"index": i, "text": t, "finish_reason": "stop"} for i, t in enumerate(outs)]}

    @app.post("/v1/chat/completions")
    def chat(req: _Chat) -> dict[str, Any]:
        app.state.calls["chat"] += 1
        prompt = "\n".join(m.content for m in req.messages)
        out = _run(lm.generate, [prompt], req.max_tokens, temperature=req.temperature, stop=_stops(req.stop))[0]
        return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                "model": model_name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": out}, "finish_reason": "stop"}]}

    return app
