"""Tiny transformer models the tests build themselves (weights cannot be downloaded here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def st_modules() -> tuple[Any, Any]:
    """sentence-transformers' (Transformer, Pooling) modules, wherever this version keeps them."""
    try:
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:  # older sentence-transformers
        from sentence_transformers.models import Pooling, Transformer
    return Transformer, Pooling


def tiny_sentence_transformer(root: Path, vocab: list[str], out: str = "st") -> tuple[Any, Any]:
    """A 16-dim, one-layer BERT with mean pooling as a sentence-transformers model, saved to
    ``root/out`` (the BERT and its tokenizer in ``root/bert``); returns (model, tokenizer)."""
    import sentence_transformers as st
    import torch
    import transformers

    (root / "vocab.txt").write_text("\n".join(vocab), encoding="utf-8")
    tok = transformers.BertTokenizerFast(vocab_file=str(root / "vocab.txt"), do_lower_case=True)
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=32)
    transformers.BertModel(cfg).save_pretrained(root / "bert")
    tok.save_pretrained(root / "bert")
    Transformer, Pooling = st_modules()
    model = st.SentenceTransformer(modules=[Transformer(str(root / "bert"), max_seq_length=16),
                                            Pooling(16, pooling_mode="mean")], device="cpu")
    model.save(str(root / out))
    return model, tok
