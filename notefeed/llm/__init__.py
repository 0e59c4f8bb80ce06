"""notefeed.llm: language models behind one interface (``embed``, ``generate``).

Backends: :class:`BuiltinLM` (a small transformer trained on the workspace's notes),
:class:`HttpLM` (any OpenAI-compatible endpoint) and :class:`LocalLM` (a model folder).
Importing the package registers the backends, the ``llm/notellm`` and ``llm/interest``
recall channels and the ``llm`` eval stage.
"""

from notefeed.llm import evaluate as _evaluate  # noqa: F401  (registers EVAL_STAGES["llm"])
from notefeed.llm.base import BACKENDS, BudgetExceeded, LanguageModel, LLMError, open_backend
from notefeed.llm.builtin import BuiltinConfig, BuiltinLM
from notefeed.llm.cache import DiskCache
from notefeed.llm.corpus import NoteCorpus, note_text
from notefeed.llm.http import Budget, HttpLM
from notefeed.llm.interest import Interest, InterestChannel, infer_interests
from notefeed.llm.local import LocalLM
from notefeed.llm.notellm import NoteLLMChannel
from notefeed.llm.pairs import mine_pairs
from notefeed.llm.tasks import LLMRewriter, rewrite_query, suggest_titles
from notefeed.llm.train import train_builtin

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
