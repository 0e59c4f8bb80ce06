"""``llm/builtin``: the small transformer the project trains itself (see :mod:`.train`).

Inference and persistence only: ``embed`` (the ``[EMB]`` state), ``generate`` (greedy or
sampled decoding with the causal mode of the same network), ``tag_probs`` / ``predict_tags``
(the tag head). A model folder holds ``config.json``, ``tokenizer.json`` and
``model.safetensors``; never pickle.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from notefeed.llm.base import BACKENDS, TRAIN_BUDGET_S, LLMError, check_texts
from notefeed.llm.net import NoteLMNet
from notefeed.llm.tokenizer import SPECIALS, Tokenizer

__all__ = ["BuiltinConfig", "BuiltinLM", "resolve_device", "TRAIN_BUDGET_S"]

_KIND = "notefeed.llm.BuiltinLM"


@dataclass
class BuiltinConfig:
    """Hyper-parameters (saved with the model). Sized to train on 10k notes in minutes on 2 cores."""

    dim: int = 64
    layers: int = 2
    heads: int = 4
    max_len: int = 64
    out_dim: int = 64
    dropout: float = 0.1
    #: the note vector: "emb" (the [EMB] state only, as NoteLLM), "emb+mean" (plus the mean of the
    #: tokens' states), "emb+bow" (plus the mean of the input token embeddings)
    pool: str = "emb"
    max_words: int = 8000
    min_count: int = 2
    max_tags: int = 2000
    #: planned passes over the pairs; ``max_time_s`` usually ends training first on a large corpus
    epochs: int = 10
    batch_size: int = 128
    lr: float = 2e-3
    tag_weight: float = 0.5  # tag/category classification loss weight
    lm_weight: float = 0.5  # causal LM loss weight (0: no generation)
    #: the LM loss on every n-th step: its vocabulary-wide output layer cost as much as the two
    #: contrastive passes together (0.62 vs 0.30 CPU-s per step at n=2 vs no LM on sim-demo)
    lm_every: int = 4
    tag_drop: float = 0.5  # chance a training note is read without its tags
    seed: int = 0
    device: str = "cpu"
    #: 1 by default: on a shared 2-core box a second intra-op thread made a step 4x slower
    threads: int = 1
    #: training cap: CPU seconds of the process on the CPU, wall seconds on a GPU; the learning
    #: rate is annealed to whichever ends first, the epochs or the cap
    max_time_s: float | None = None

    def __post_init__(self) -> None:
        for key in ("dim", "layers", "heads", "max_len", "out_dim", "epochs", "batch_size", "max_words", "lm_every"):
            if int(getattr(self, key)) < 1:
                raise LLMError(f"{key}: must be >= 1, got {getattr(self, key)}")
        if self.dim % self.heads:
            raise LLMError(f"heads: must divide dim={self.dim}, got {self.heads}")
        if self.max_len < 8:
            raise LLMError(f"max_len: must be >= 8, got {self.max_len}")


def resolve_device(device: str) -> torch.device:
    if device.startswith("cuda") and not torch.cuda.is_available():
        warnings.warn(f"llm: device {device!r} unavailable; using the CPU", stacklevel=3)
        return torch.device("cpu")
    return torch.device(device)


@BACKENDS.register("llm/builtin")
class BuiltinLM:
    """A trained :class:`NoteLMNet` with its tokenizer, tag and category vocabularies."""

    name = "llm/builtin"
    #: prompts in the note format (``body [TITLE]``) rather than instructions
    prompt_style = "notes"

    def __init__(self, config: BuiltinConfig, tokenizer: Tokenizer, tags: list[str], categories: list[str],
                 net: NoteLMNet | None = None, info: dict | None = None) -> None:
        self.config, self.tokenizer = config, tokenizer
        self.tags, self.categories = list(tags), list(categories)
        self.net = net or self.new_net(config, tokenizer, self.tags, self.categories)
        self.net.eval()
        self.info = dict(info or {})
        self.device = torch.device("cpu")

    @staticmethod
    def new_net(c: BuiltinConfig, tok: Tokenizer, tags: list[str], cats: list[str]) -> NoteLMNet:
        return NoteLMNet(len(tok), c.dim, c.layers, c.heads, c.max_len, len(tags), len(cats), c.out_dim, c.dropout,
                         c.pool)

    @property
    def dim(self) -> int:
        return self.config.out_dim

    def to(self, device: str) -> BuiltinLM:
        self.device = resolve_device(device)
        self.net.to(self.device)
        return self

    # ------------------------------------------------------------------ encoding
    def encode_batch(self, texts: Sequence[str], prefix: int) -> np.ndarray:
        """(n, t) int64 ids, ``prefix`` token first, right-padded, cut to ``max_len``."""
        rows = [[prefix] + self.tokenizer.encode(t)[: self.config.max_len - 1] for t in texts]
        out = np.zeros((len(rows), max((len(r) for r in rows), default=1)), np.int64)
        for i, r in enumerate(rows):
            out[i, : len(r)] = r
        return out

    @torch.inference_mode()
    def _pooled(self, texts: list[str], batch: int) -> torch.Tensor:
        outs = [self.net.pooled(torch.from_numpy(self.encode_batch(texts[i : i + batch], self.tokenizer.emb))
                                .to(self.device)).float().cpu() for i in range(0, len(texts), batch)]
        return torch.cat(outs) if outs else torch.zeros((0, self.dim))

    def embed(self, texts: Sequence[str], batch: int = 256) -> np.ndarray:
        """(n, out_dim) float32 unit rows: the ``[EMB]`` state of each text."""
        t = check_texts(texts)
        return torch.nn.functional.normalize(self._pooled(t, batch), dim=-1).numpy().astype(np.float32)

    def tag_probs(self, texts: Sequence[str], batch: int = 256) -> np.ndarray:
        """(n, n_tags) float32 independent tag probabilities from the tag head."""
        z = torch.nn.functional.normalize(self._pooled(check_texts(texts), batch), dim=-1)
        with torch.inference_mode():
            return torch.sigmoid(self.net.tag_head.cpu()(z)).numpy().astype(np.float32) if self.tags \
                else np.zeros((len(z), 0), np.float32)

    def predict_tags(self, texts: Sequence[str], k: int = 5, min_prob: float = 0.0) -> list[list[tuple[str, float]]]:
        """Top ``k`` tags per text with their probability (at least ``min_prob``)."""
        p = self.tag_probs(texts)
        out = []
        for row in p:
            top = np.argsort(-row, kind="stable")[:k]
            out.append([(self.tags[j], round(float(row[j]), 4)) for j in top if row[j] >= min_prob])
        return out

    # ------------------------------------------------------------------ generation
    @torch.inference_mode()
    def generate(self, prompts: Sequence[str], max_tokens: int = 32, *, temperature: float = 0.0,
                 stop: Sequence[str] | None = None, seed: int = 0) -> list[str]:
        """Continue each prompt (``[BOS]`` + prompt, its last tokens when long) with the causal LM."""
        ps = check_texts(prompts, "prompts")
        if max_tokens < 1:
            raise LLMError(f"max_tokens: must be >= 1, got {max_tokens}")
        if temperature < 0:
            raise LLMError(f"temperature: must be >= 0, got {temperature}")
        tok, L = self.tokenizer, self.config.max_len
        max_tokens = min(int(max_tokens), L - 2)
        stop_ids = {tok.eos} | {tok.index[s] for s in (stop or ()) if s in SPECIALS}
        stop_text = [s for s in (stop or ()) if s not in SPECIALS and s]
        gen = torch.Generator().manual_seed(seed)
        outs: list[str] = []
        for lo in range(0, len(ps), 64):
            chunk = ps[lo : lo + 64]
            rows = [[tok.bos] + tok.encode(p)[-(L - 1 - max_tokens):] for p in chunk]
            lens = torch.tensor([len(r) for r in rows])
            ids = torch.zeros((len(rows), L), dtype=torch.int64)
            for i, r in enumerate(rows):
                ids[i, : len(r)] = torch.tensor(r)
            done = torch.zeros(len(rows), dtype=torch.bool)
            new: list[list[int]] = [[] for _ in rows]
            # special tokens decode to nothing: only the stops (and [EOS]) may be produced
            banned = torch.tensor([i for i in range(len(SPECIALS)) if i not in stop_ids])
            for step in range(max_tokens):
                t = int(lens.max())
                logits = self.net.lm_logits(ids[:, :t].to(self.device)).float().cpu()
                last = logits[torch.arange(len(rows)), lens - 1]
                last[:, banned] = -torch.inf
                if step == 0:  # at least one token: an empty continuation answers nothing
                    last[:, sorted(stop_ids)] = -torch.inf
                if temperature > 0:
                    nxt = torch.multinomial(torch.softmax(last / temperature, -1), 1, generator=gen)[:, 0]
                else:
                    nxt = last.argmax(-1)
                for i in range(len(rows)):
                    if done[i]:
                        continue
                    if int(nxt[i]) in stop_ids or lens[i] >= L:
                        done[i] = True
                        continue
                    new[i].append(int(nxt[i]))
                    ids[i, lens[i]] = nxt[i]
                    lens[i] += 1
                if bool(done.all()):
                    break
            for r in new:
                text = tok.decode(r)
                for s in stop_text:
                    text = text.split(s)[0]
                outs.append(text.strip())
        return outs

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        save_file(state, str(p / "model.safetensors"))
        self.tokenizer.save(p / "tokenizer.json")
        meta = {"kind": _KIND, "config": asdict(self.config), "tags": self.tags, "categories": self.categories,
                "info": self.info}
        (p / "config.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
        return p

    @classmethod
    def load(cls, path: str | Path) -> BuiltinLM:
        """Inverse of :meth:`save`; a missing, corrupt or mismatched folder raises :class:`LLMError`."""
        p = Path(path)
        try:
            meta = json.loads((p / "config.json").read_text(encoding="utf-8"))
            if meta.get("kind") != _KIND:
                raise LLMError(f"field 'kind' is {meta.get('kind')!r}, expected {_KIND!r}")
            config = BuiltinConfig(**meta["config"])
            tok = Tokenizer.load(p / "tokenizer.json")
            net = cls.new_net(config, tok, meta["tags"], meta["categories"])
            net.load_state_dict(load_file(str(p / "model.safetensors")))
        except LLMError as e:
            raise LLMError(f"{p}: cannot load the built-in model ({e})") from None
        except Exception as e:  # json, safetensors, torch raise several types
            raise LLMError(f"{p}: cannot load the built-in model ({e})") from e
        return cls(config, tok, meta["tags"], meta["categories"], net, meta.get("info"))
