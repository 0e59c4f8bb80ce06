"""The optional sentence-transformers path, with a tiny BERT this test builds (no download)."""

from __future__ import annotations

import numpy as np
import pytest

from notefeed.content import ContentError, SentenceTransformerEncoder
from tests.tiny_models import tiny_sentence_transformer

st = pytest.importorskip("sentence_transformers")
transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("st")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "coffee", "tea", "paris", "london", "shop", "上", "海"]
    model, _ = tiny_sentence_transformer(root, vocab, out="model")
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
