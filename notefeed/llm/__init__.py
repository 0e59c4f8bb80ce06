"""notefeed.llm: language models behind one interface (``embed``, ``generate``).

Backends: :class:`BuiltinLM` (a small transformer trained on the workspace's notes),
:class:`HttpLM` (any OpenAI-compatible endpoint) and :class:`LocalLM` (a model folder).
The package imports its modules at first use, not at import (the public names below load on
first access; torch only where a model is built). Its registrations are named to each registry
and imported at that registry's first lookup: the backends by :data:`BACKENDS`
(``llm/base.py``), the ``llm`` eval stage here, the ``llm/notellm`` and ``llm/interest`` recall
channels by ``notefeed.recall.CHANNEL_MODULES``, the ``rewrite/llm`` backend by
``notefeed.search.base.REWRITERS``.
"""

from notefeed._lazy import lazy_exports
from notefeed.eval.stages import EVAL_STAGES
from notefeed.llm.base import BACKENDS, BudgetExceeded, LanguageModel, LLMError, open_backend

EVAL_STAGES.defer("notefeed.llm.evaluate")  # registers EVAL_STAGES["llm"] at its first lookup

_LAZY = {
    "BuiltinConfig": "notefeed.llm.builtin",
    "BuiltinLM": "notefeed.llm.builtin",
    "DiskCache": "notefeed.llm.cache",
    "NoteCorpus": "notefeed.llm.corpus",
    "note_text": "notefeed.llm.corpus",
    "Budget": "notefeed.llm.http",
    "HttpLM": "notefeed.llm.http",
    "Interest": "notefeed.llm.interest",
    "InterestChannel": "notefeed.llm.interest",
    "infer_interests": "notefeed.llm.interest",
    "LocalLM": "notefeed.llm.local",
    "NoteLLMChannel": "notefeed.llm.notellm",
    "mine_pairs": "notefeed.llm.pairs",
    "LLMRewriter": "notefeed.llm.tasks",
    "rewrite_query": "notefeed.llm.tasks",
    "suggest_titles": "notefeed.llm.tasks",
    "train_builtin": "notefeed.llm.train",
}
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

__all__ = [
    "BACKENDS",
    "Budget",
    "BudgetExceeded",
    "BuiltinConfig",
    "BuiltinLM",
    "DiskCache",
    "HttpLM",
    "Interest",
    "InterestChannel",
    "LLMRewriter",
    "NoteLLMChannel",
    "infer_interests",
    "mine_pairs",
    "rewrite_query",
    "suggest_titles",
    "LLMError",
    "LanguageModel",
    "LocalLM",
    "NoteCorpus",
    "note_text",
    "open_backend",
    "train_builtin",
]
