"""``llm/local``: a model folder the user names; nothing is downloaded.

A sentence-transformers folder (``modules.json``) embeds; a transformers causal-LM folder
(``config.json`` naming a ``...ForCausalLM`` / ``...LMHeadModel`` architecture) generates, and
embeds by mean-pooling its last hidden states when no sentence-transformers model is given.
``generator`` names a second folder for generation next to an embedding model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from notefeed.llm.base import BACKENDS, LLMError, check_texts

__all__ = ["LocalLM"]


def _is_causal(folder: Path) -> bool:
    try:
        arch = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("architectures") or []
    except (OSError, ValueError):
        return False
    return any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in arch)


@BACKENDS.register("llm/local")
class LocalLM:
    name = "llm/local"
    prompt_style = "chat"

    def __init__(self, path: str | Path, generator: str | Path | None = None, device: str = "cpu",
                 max_length: int = 256) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise LLMError(f"path: {self.path} is not a model folder")
        self.device, self.max_length = device, int(max_length)
        self._st = None
        self._lm = self._tok = None
        try:
            if (self.path / "modules.json").is_file():
                from sentence_transformers import SentenceTransformer

                self._st = SentenceTransformer(str(self.path), device=device, local_files_only=True)
            gen = Path(generator) if generator is not None else (self.path if _is_causal(self.path) else None)
            if gen is not None:
                from transformers import AutoModelForCausalLM, AutoTokenizer

                self._tok = AutoTokenizer.from_pretrained(str(gen), local_files_only=True)
                self._lm = AutoModelForCausalLM.from_pretrained(str(gen), local_files_only=True).to(device).eval()
        except ImportError as e:
            raise LLMError(f"path: {e.name} is not installed (pip install 'notefeed[content]')") from None
        except Exception as e:  # transformers raises OSError, ValueError, json errors...
            raise LLMError(f"path: cannot load {self.path} ({type(e).__name__}: {e})") from None
        if self._st is None and self._lm is None:
            raise LLMError(f"path: {self.path} holds neither a sentence-transformers nor a causal LM model")

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        ts = check_texts(texts)
        if self._st is not None:
            z = np.asarray(self._st.encode(ts, convert_to_numpy=True, show_progress_bar=False), np.float32)
        else:
            import torch

            assert self._lm is not None and self._tok is not None
            if self._tok.pad_token is None:
                self._tok.pad_token = self._tok.eos_token or self._tok.unk_token
            enc = self._tok(ts, return_tensors="pt", padding=True, truncation=True, max_length=self.max_length)
            with torch.inference_mode():
                h = self._lm(**enc.to(self.device), output_hidden_states=True).hidden_states[-1]
            m = enc["attention_mask"][..., None].float()
            z = ((h * m).sum(1) / m.sum(1).clamp(min=1)).float().cpu().numpy()
        return (z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)).astype(np.float32)

    def generate(self, prompts: Sequence[str], max_tokens: int = 32, *, temperature: float = 0.0,
                 stop: Sequence[str] | None = None) -> list[str]:
        ps = check_texts(prompts, "prompts")
        if self._lm is None or self._tok is None:
            raise LLMError(f"generate: {self.path} has no causal LM (name one with generator=FOLDER)")
        import torch

        outs = []
        for p in ps:
            enc = self._tok(p, return_tensors="pt", truncation=True, max_length=self.max_length).to(self.device)
            with torch.inference_mode():
                ids = self._lm.generate(**enc, max_new_tokens=int(max_tokens), do_sample=temperature > 0,
                                        temperature=temperature if temperature > 0 else None,
                                        pad_token_id=self._tok.pad_token_id or self._tok.eos_token_id)
            text = self._tok.decode(ids[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            for s in stop or ():
                text = text.split(s)[0] if s else text
            outs.append(text.strip())
        return outs
