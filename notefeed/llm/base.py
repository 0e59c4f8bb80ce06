"""The language-model contract: ``embed(texts)`` and ``generate(prompts)``, behind one Protocol.

Backends register by name in :data:`BACKENDS` (``llm/builtin``, ``llm/http``, ``llm/local``);
:func:`open_backend` turns a spec string into one (``builtin:PATH``, ``local:PATH``,
``http://host:port/v1``). Every backend validates its inputs here, so bad input fails with
one kind of error (:class:`LLMError`, a ``ValueError``) naming the field.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from notefeed.registry import Registry

__all__ = ["LanguageModel", "LLMError", "BudgetExceeded", "BACKENDS", "TRAIN_BUDGET_S", "check_texts",
           "open_backend"]


class LLMError(ValueError):
    """Bad input to a language-model backend, a failed call or a corrupt artifact; names the field."""


class BudgetExceeded(LLMError):
    """A job spent its request or time budget (``max_requests`` / ``max_seconds``)."""


@runtime_checkable
class LanguageModel(Protocol):
    """A text model: unit-row embeddings and text continuations.

    ``embed``: n texts -> (n, d) float32, rows L2-normalised. ``generate``: one continuation
    per prompt (the generated text only, without the prompt), at most ``max_tokens`` tokens;
    ``temperature`` 0 is greedy; generation stops at any string of ``stop``.
    """

    name: str

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...

    def generate(self, prompts: Sequence[str], max_tokens: int = 32, *, temperature: float = 0.0,
                 stop: Sequence[str] | None = None) -> list[str]: ...


#: "llm/builtin", "llm/http", "llm/local": factories taking the backend's keyword options
BACKENDS: Registry[LanguageModel] = Registry("language model backend")
BACKENDS.defer("notefeed.llm.builtin", "notefeed.llm.http", "notefeed.llm.local")  # imported at the first lookup

#: the training budget of every built-in model the project trains on its own (``notefeed llm
#: embed``, the ``llm/notellm`` and ``llm/interest`` channels, the eval) unless one is named:
#: CPU seconds on the CPU, wall seconds on a GPU (:attr:`BuiltinConfig.max_time_s`)
TRAIN_BUDGET_S = 540.0


def check_texts(texts: object, field: str = "texts") -> list[str]:
    """A list of strings (possibly empty), or :class:`LLMError` naming ``field`` and the bad row."""
    if isinstance(texts, str | bytes):
        raise LLMError(f"{field}: expected a list of strings, got a single {type(texts).__name__}")
    if not isinstance(texts, Sequence | np.ndarray):
        raise LLMError(f"{field}: expected a list of strings, got {type(texts).__name__}")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise LLMError(f"{field}[{i}]: expected str, got {type(t).__name__}")
    return out


def open_backend(spec: str, **options: object) -> LanguageModel:
    """``builtin:PATH`` (a model folder written by ``BuiltinLM.save``), ``local:PATH`` (a
    sentence-transformers / transformers folder) or an ``http(s)://.../v1`` base URL."""
    if spec.startswith(("http://", "https://")):
        return BACKENDS.create("llm/http", base_url=spec, **options)
    kind, sep, path = spec.partition(":")
    if not sep or kind not in ("builtin", "local"):
        raise LLMError(f"backend: expected builtin:PATH, local:PATH or an http(s) URL, got {spec!r}")
    if not Path(path).exists():
        raise LLMError(f"backend: {path} does not exist")
    if kind == "builtin":
        from notefeed.llm.builtin import BuiltinLM

        return BuiltinLM.load(path)
    return BACKENDS.create("llm/local", path=path, **options)
