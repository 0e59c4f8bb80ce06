"""The optional sentence-transformers path, with a tiny BERT this test builds (no download)."""

from __future__ import annotations

import numpy as np
import pytest

from notefeed.content import ContentError, SentenceTransformerEncoder

st = pytest.importorskip("sentence_transformers")
transformers = pytest.importorskip("transformers")


def _modules():
    try:
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:  # older sentence-transformers
        from sentence_transformers.models import Pooling, Transformer
    return Transformer, Pooling


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    import torch

    root = tmp_path_factory.mktemp("st")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "coffee", "tea", "paris", "london", "shop", "上", "海"]
    (root / "vocab.txt").write_text("\n".join(vocab), encoding="utf-8")
    tok = transformers.BertTokenizerFast(vocab_file=str(root / "vocab.txt"), do_lower_case=True)
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=32)
    transformers.BertModel(cfg).save_pretrained(root / "bert")
    tok.save_pretrained(root / "bert")
    Transformer, Pooling = _modules()
    tr = Transformer(str(root / "bert"), max_seq_length=16)
    model = st.SentenceTransformer(modules=[tr, Pooling(16, pooling_mode="mean")], device="cpu")
    model.save(str(root / "model"))
    return root / "model", model


def test_loads_a_saved_model_folder_and_encodes(tiny_model):
    path, original = tiny_model
    enc = SentenceTransformerEncoder(path)
    texts = ["coffee paris", "tea london", "上海"]
    z = enc.fit(texts).transform(texts)
    assert enc.dim == 16 and z.shape == (3, 16) and z.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    want = original.encode(texts, convert_to_numpy=True)
    want = want / np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(z, want, atol=1e-5)
    with pytest.raises(ContentError, match=r"texts\[0\]: is None"):
        enc.transform([None])


def test_missing_or_broken_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ContentError, match="model_path"):
        SentenceTransformerEncoder(tmp_path / "absent")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "modules.json").write_text("{not json")
    with pytest.raises(ContentError, match="model_path"):
        SentenceTransformerEncoder(tmp_path / "broken")
