"""``llm/notellm``: NoteLLM-style note embeddings as a recall channel.

Fit mines co-occurrence pairs from the positives (:mod:`.pairs`), trains the built-in model
on them (:mod:`.train`: contrastive + tag/category + LM) unless ``model_path`` names a trained
one, and embeds every note from its text. Recall: the recency-weighted mean of the user's
recent notes' vectors, searched in an inner-product index over all notes. Vectors come from
text alone, so a new note with no behaviour is recallable as soon as :meth:`add_notes` embeds it.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

from notefeed.data.dataset import Dataset
from notefeed.llm.base import LLMError
from notefeed.llm.builtin import TRAIN_BUDGET_S, BuiltinConfig, BuiltinLM
from notefeed.llm.corpus import NoteCorpus
from notefeed.llm.pairs import mine_pairs
from notefeed.llm.tokenizer import Tokenizer
from notefeed.recall._common import excluded_items, positive_log, recency_weights
from notefeed.recall.ann import AnnIndex
from notefeed.recall.base import CHANNELS, Candidates, UserContext

__all__ = ["NoteLLMChannel"]


@CHANNELS.register("llm/notellm")
class NoteLLMChannel:
    name = "llm/notellm"
    #: training takes minutes: `notefeed train` / `notefeed llm embed` fit it, never `serve`
    offline_only: ClassVar[bool] = True

    def __init__(self, model_path: str | None = None, n_recent: int = 20, decay: float = 0.9,
                 window: int = 10, top_k: int = 10, cap: int = 30, progress: bool = False,
                 **config: object) -> None:
        if int(n_recent) < 1 or not 0.0 < decay <= 1.0:
            raise ValueError(f"{self.name}: n_recent >= 1 and decay in (0, 1] are required")
        self.model_path, self.n_recent, self.decay = model_path, int(n_recent), float(decay)
        self.window, self.top_k, self.cap, self.progress = int(window), int(top_k), int(cap), progress
        # the same training budget as `notefeed llm embed` unless the config names one
        self.config = BuiltinConfig(**{"max_time_s": TRAIN_BUDGET_S, **config})  # type: ignore[arg-type]
        self.lm: BuiltinLM | None = None
        self.vectors: np.ndarray | None = None
        self.n_fit = 0
        self.version: str | None = None
        self._index: AnnIndex | None = None

    # ------------------------------------------------------------------ training
    def fit(self, ds: Dataset) -> NoteLLMChannel:
        corpus = NoteCorpus.from_dataset(ds)
        if self.model_path:
            self.lm = BuiltinLM.load(self.model_path)
        else:
            from notefeed.llm.train import train_builtin

            log = positive_log(ds)
            pairs, _ = mine_pairs(log["user"].to_numpy(), log["item"].to_numpy(), log["ts"].to_numpy(), ds.n_items,
                                  self.window, self.top_k, self.cap)
            self.lm = train_builtin(corpus, pairs, self.config, progress=self.progress)
        self.set_vectors(self.lm.embed(corpus.texts()))
        return self

    def set_vectors(self, vectors: np.ndarray, n_fit: int | None = None) -> None:
        """The note vectors; the version is a hash of the first ``n_fit`` (those of the fit, before
        :meth:`add_notes` appended any)."""
        self.vectors = np.ascontiguousarray(vectors, np.float32)
        self.n_fit = len(self.vectors) if n_fit is None else int(n_fit)
        self.version = hashlib.sha256(self.vectors[: self.n_fit].tobytes()).hexdigest()[:12]
        self._index = AnnIndex.of_rows(self.vectors)

    def add_notes(self, texts: list[str]) -> np.ndarray:
        """Embed new notes (text as :func:`~notefeed.llm.corpus.note_text`) and append them; their indices."""
        if self.lm is None or self.vectors is None or self._index is None:
            raise RuntimeError(f"{self.name}: add_notes() before fit()")
        z = self.lm.embed(texts)
        ids = np.arange(len(self.vectors), len(self.vectors) + len(z), dtype=np.int64)
        self.vectors = np.concatenate([self.vectors, z])
        self._index.add(z, ids)
        return ids

    # ------------------------------------------------------------------ serving
    @property
    def item_vectors(self) -> np.ndarray:
        if self.vectors is None:
            raise RuntimeError(f"{self.name}: item_vectors before fit()")
        return self.vectors

    def _query(self, ctx: UserContext) -> np.ndarray | None:
        v = self.item_vectors
        h = np.asarray(ctx.history, np.int64)
        h = h[(h >= 0) & (h < len(v))][-self.n_recent :]
        if h.size == 0:
            return None
        q = (recency_weights(h.size, self.decay)[:, None] * v[h]).sum(0)
        return (q / max(float(np.linalg.norm(q)), 1e-12)).astype(np.float32)

    def recall(self, ctx: UserContext, k: int) -> Candidates:
        q = self._query(ctx)
        if q is None or k <= 0 or self._index is None:
            return Candidates.empty(self.name)
        return Candidates(self.name, *self._index.search_excluding(q, k, excluded_items(ctx)))

    def score_items(self, ctx: UserContext, items: np.ndarray) -> np.ndarray:
        """(n,) float32 cosine of each item to the user's recent notes (0 without history)."""
        items = np.asarray(items, np.int64).ravel()
        out = np.zeros(items.size, np.float32)
        q = self._query(ctx)
        if q is None:
            return out
        ok = (items >= 0) & (items < len(self.item_vectors))
        out[ok] = self.item_vectors[items[ok]] @ q
        return out

    def neighbours(self, item: int, k: int = 10) -> Candidates:
        """Related notes of ``item``: nearest by cosine, itself excluded."""
        v = self.item_vectors
        if not 0 <= item < len(v) or self._index is None:
            raise ValueError(f"{self.name}: item index {item} out of range")
        scores, ids = self._index.search(v[item][None], k + 1)
        keep = (ids[0] >= 0) & (ids[0] != item)
        return Candidates(self.name, ids[0][keep][:k], scores[0][keep][:k])

    # ------------------------------------------------------------------ persistence
    def to_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        if self.lm is None or self.vectors is None:
            raise RuntimeError(f"{self.name}: to_state() before fit()")
        params = {"n_recent": self.n_recent, "decay": self.decay, "window": self.window, "top_k": self.top_k,
                  "cap": self.cap, "config": asdict(self.config), "version": self.version, "n_fit": self.n_fit,
                  "lm": {"config": asdict(self.lm.config), "vocab": self.lm.tokenizer.vocab, "tags": self.lm.tags,
                         "categories": self.lm.categories, "info": self.lm.info}}
        arrays = {f"net.{k}": v.detach().cpu().numpy() for k, v in self.lm.net.state_dict().items()}
        arrays["vectors"] = self.vectors
        return params, arrays

    @classmethod
    def from_state(cls, params: dict, arrays: dict[str, np.ndarray]) -> NoteLLMChannel:
        p = dict(params)
        lmp = p.pop("lm")
        version, n_fit = p.pop("version", None), p.pop("n_fit", None)
        ch = cls(**{k: v for k, v in p.items() if k != "config"}, **p.get("config", {}))
        cfg = BuiltinConfig(**lmp["config"])
        tok = Tokenizer(lmp["vocab"])
        net = BuiltinLM.new_net(cfg, tok, lmp["tags"], lmp["categories"])
        net.load_state_dict({k[4:]: torch.from_numpy(np.array(v)) for k, v in arrays.items() if k.startswith("net.")})
        ch.lm = BuiltinLM(cfg, tok, lmp["tags"], lmp["categories"], net, lmp.get("info"))
        ch.set_vectors(arrays["vectors"], n_fit)
        if version is not None and version != ch.version:
            raise LLMError(f"{cls.name}: stored vectors do not match their version {version}")
        return ch

    def save(self, path: str | Path) -> Path:
        """``path/model/`` (the built-in model), ``vectors.safetensors`` and ``meta.json`` (version)."""
        if self.lm is None or self.vectors is None:
            raise RuntimeError(f"{self.name}: save() before fit()")
        p = Path(path)
        self.lm.save(p / "model")
        save_file({"vectors": self.vectors}, str(p / "vectors.safetensors"))
        meta = {"kind": self.name, "version": self.version, "n_notes": len(self.vectors), "n_fit": self.n_fit,
                "created": int(time.time()),
                "n_recent": self.n_recent, "decay": self.decay}
        (p / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        return p

    @classmethod
    def load(cls, path: str | Path) -> NoteLLMChannel:
        p = Path(path)
        try:
            meta = json.loads((p / "meta.json").read_text(encoding="utf-8"))
            ch = cls(n_recent=meta["n_recent"], decay=meta["decay"])
            ch.lm = BuiltinLM.load(p / "model")
            ch.set_vectors(load_file(str(p / "vectors.safetensors"))["vectors"], meta.get("n_fit"))
        except LLMError:
            raise
        except Exception as e:
            raise LLMError(f"{p}: cannot load note vectors ({e})") from e
        if ch.version != meta.get("version"):
            raise LLMError(f"{p}: vectors.safetensors does not match the version in meta.json")
        return ch
