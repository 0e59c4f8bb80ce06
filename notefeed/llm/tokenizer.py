"""A small word-piece tokenizer built from the notes themselves (vocabulary saved as JSON).

Words (lower-cased ``\\w+`` runs; each CJK ideograph is a word of its own) frequent in the
notes get one token; any other word is spelled in characters: ``▁c`` starts a word, ``##c``
continues it, so nothing is ever out of vocabulary except characters never seen (``[UNK]``).
Special tokens are written literally in text (``"body [TITLE] a title"``).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from notefeed.llm.base import LLMError

__all__ = ["Tokenizer", "SPECIALS", "words"]

SPECIALS = ("[PAD]", "[UNK]", "[EMB]", "[BOS]", "[EOS]", "[SEP]", "[TITLE]", "[TAGS]")
_SPECIAL_RE = "|".join(re.escape(s) for s in SPECIALS)
_TOKEN = re.compile(rf"{_SPECIAL_RE}|[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[^\W_]+", re.UNICODE)


def words(text: str) -> list[str]:
    """Lower-cased words and literal special tokens of ``text``."""
    return [w if w in SPECIALS else w.lower() for w in _TOKEN.findall(text)]


class Tokenizer:
    """Word + character-piece vocabulary; ``encode`` / ``decode``; JSON on disk."""

    def __init__(self, vocab: list[str]) -> None:
        if list(vocab[: len(SPECIALS)]) != list(SPECIALS):
            raise LLMError("vocab: must start with the special tokens " + ", ".join(SPECIALS))
        self.vocab = list(vocab)
        self.index = {t: i for i, t in enumerate(self.vocab)}
        if len(self.index) != len(self.vocab):
            raise LLMError("vocab: duplicate tokens")
        self.pad, self.unk, self.emb, self.bos, self.eos, self.sep, self.title, self.tags = range(len(SPECIALS))

    @classmethod
    def build(cls, texts: Iterable[str], max_words: int = 8000, min_count: int = 2) -> Tokenizer:
        """The ``max_words`` most frequent words (seen at least ``min_count`` times) plus
        every character seen, as word-start and continuation pieces."""
        counts: Counter[str] = Counter()
        chars: set[str] = set()
        for t in texts:
            ws = [w for w in words(t) if w not in SPECIALS]
            counts.update(ws)
            for w in ws:
                chars.update(w)
        kept = [w for w, c in sorted(counts.items(), key=lambda x: (-x[1], x[0])) if c >= min_count][:max_words]
        pieces = [p for c in sorted(chars) for p in ("▁" + c, "##" + c)]
        return cls(list(SPECIALS) + kept + pieces)

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        out: list[int] = []
        for w in words(text):
            i = self.index.get(w)
            if i is not None:
                out.append(i)
                continue
            for j, ch in enumerate(w):
                out.append(self.index.get(("▁" if j == 0 else "##") + ch, self.unk))
        return out

    def decode(self, ids: Iterable[int]) -> str:
        """Words joined by spaces; special tokens dropped; character pieces glued back."""
        parts: list[str] = []
        for i in ids:
            t = self.vocab[int(i)] if 0 <= int(i) < len(self.vocab) else "[UNK]"
            if t in SPECIALS:
                continue
            if t.startswith("##") and parts:
                parts[-1] += t[2:]
            else:
                parts.append(t[1:] if t.startswith("▁") else t.removeprefix("##"))
        return " ".join(parts)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"kind": "notefeed.llm.Tokenizer", "vocab": self.vocab},
                                         ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
            if raw.get("kind") != "notefeed.llm.Tokenizer":
                raise LLMError("field 'kind' is not notefeed.llm.Tokenizer")
            return cls([str(t) for t in raw["vocab"]])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise LLMError(f"{path}: cannot load the tokenizer ({e})") from None
