from __future__ import annotations

import numpy as np
import pytest

from notefeed.content import ContentError, TextEncoder, has_cjk, text_features, tokenize

DOCS = [
    "Best coffee in Paris: croissant and espresso",
    "Paris coffee shops for a rainy day",
    "London tea rooms and scones",
    "afternoon tea in London",
    "上海外滩咖啡探店，拿铁很好喝",
    "上海咖啡馆推荐",
    "成都火锅太辣了",
    "重庆火锅和成都火锅哪个好吃",
]


def test_tokenize_english_lowercases_and_drops_punctuation():
    assert tokenize("Best Coffee in PARIS!") == ["best", "coffee", "in", "paris"]


def test_tokenize_chinese_segments_with_jieba():
    toks = tokenize("今天去上海外滩拍照，好美！")
    assert has_cjk("上海") and not has_cjk("Shanghai")
    assert "上海" in toks and "外滩" in toks and "拍照" in toks
    assert "，" not in toks and "！" not in toks
    assert "".join(toks) == "今天去上海外滩拍照好美"


def test_text_features_have_words_bigrams_and_char_ngrams():
    f = text_features("coffee shop", word_ngrams=2, char_ngrams=(3, 3))
    assert {"coffee", "shop", "w:coffee shop", "c:<co", "c:ee>"} <= set(f)
    zh = text_features("咖啡馆", word_ngrams=1)
    assert "c:咖" in zh or "咖啡馆" in zh


def test_encoder_shape_norm_and_determinism(tmp_path):
    a = TextEncoder(dim=16, seed=0).fit_transform(DOCS)
    b = TextEncoder(dim=16, seed=0).fit_transform(DOCS)
    assert a.shape == (len(DOCS), 16) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(a, b)
    s = a @ a.T
    # topic-mates are closer than strangers, in both languages
    assert s[0, 1] > s[0, 2] and s[2, 3] > s[2, 6]
    assert s[4, 5] > s[4, 6] and s[6, 7] > s[6, 0]


def test_unknown_text_is_zero_and_new_text_is_encoded():
    enc = TextEncoder(dim=8).fit(DOCS)
    z = enc.transform(["", "paris coffee"])
    assert np.allclose(z[0], 0.0) and abs(np.linalg.norm(z[1]) - 1) < 1e-5


def test_save_load_gives_equal_outputs(tmp_path):
    enc = TextEncoder(dim=8).fit(DOCS)
    enc.save(tmp_path / "enc")
    again = TextEncoder.load(tmp_path / "enc")
    np.testing.assert_array_equal(enc.transform(DOCS), again.transform(DOCS))


def test_corrupt_or_wrong_artifact_is_a_clear_error(tmp_path):
    enc = TextEncoder(dim=8).fit(DOCS)
    enc.save(tmp_path / "enc")
    (tmp_path / "enc" / "weights.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ContentError, match="corrupt safetensors"):
        TextEncoder.load(tmp_path / "enc")
    with pytest.raises(ContentError, match="missing"):
        TextEncoder.load(tmp_path / "nowhere")


@pytest.mark.parametrize(
    "bad, field",
    [([], "texts: empty"), (["ok", None], r"texts\[1\]: is None"), ("one string", "texts"), ([3], r"texts\[0\]")],
)
def test_bad_texts_name_the_field(bad, field):
    with pytest.raises(ContentError, match=field):
        TextEncoder(dim=4).fit(bad)
    with pytest.raises(ContentError, match=field):
        TextEncoder(dim=4).fit(DOCS).transform(bad)


def test_tokenize_none_is_a_clear_error():
    with pytest.raises(ContentError, match="text"):
        tokenize(None)  # type: ignore[arg-type]


def test_transform_before_fit_is_a_clear_error():
    with pytest.raises(ContentError, match="fit"):
        TextEncoder().transform(["x"])


@pytest.mark.parametrize("sublinear", [True, False])
def test_tfidf_equals_the_diagonal_products(sublinear: bool) -> None:
    """``_tfidf`` works on the CSR arrays; its values are those of ``diags(1 / norm) @ (x @
    diags(idf))`` to the last bit, so the vectors do not depend on how it is computed."""
    import scipy.sparse as sp

    texts = ["Best coffee in Paris", "coffee coffee coffee beans", "今天去上海外滩拍照", "paris metro at night",
             "", "mountain trail hiking boots and socks"] * 5
    enc = TextEncoder(dim=4, sublinear_tf=sublinear).fit(texts)
    counts = enc._counts(texts)
    x = counts.copy()
    if sublinear:
        x.data = np.log1p(x.data)
    x = x @ sp.diags(enc.idf_)
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    want = (sp.diags(1.0 / np.maximum(norms, 1e-12)) @ x).tocsr()
    got = enc._tfidf(counts)
    np.testing.assert_array_equal(enc._project(got), np.asarray(want @ enc.components_.T, dtype=np.float32))
    want.sort_indices()
    got.sort_indices()
    assert np.array_equal(got.indptr, want.indptr) and np.array_equal(got.indices, want.indices)
    assert got.dtype == want.dtype and np.array_equal(got.data, want.data)


def test_projection_reads_a_contiguous_copy_made_once_per_components_array() -> None:
    """The transposed components are copied once (not on every product) and again only when
    the components are replaced (a refit or a load); the vectors are those of the plain product."""
    texts = ["paris travel guide", "pasta recipe at home", "travel to rome and paris", "home pasta"] * 5
    enc = TextEncoder(dim=3).fit(texts)
    x = enc._tfidf(enc._counts(["paris pasta"]))
    first = enc._components_t()
    assert first.flags["C_CONTIGUOUS"] and enc._components_t() is first
    np.testing.assert_array_equal(enc._project(x), np.asarray(x @ enc.components_.T, np.float32))
    enc.fit(texts[:6])  # new components: a new copy
    assert enc._components_t() is not first
    np.testing.assert_array_equal(enc._components_t(), enc.components_.T)


@pytest.mark.parametrize(("shape", "n_iter"), [((300, 1000), 5), ((1000, 300), 5), ((800, 800), 2)])
def test_randomized_components_are_truncated_svds(shape: tuple[int, int], n_iter: int) -> None:
    """The SVD from products alone gives scikit-learn's randomized ``TruncatedSVD`` components
    (the same start, steps and signs), wide and tall matrices, with and without the LU steps."""
    import scipy.sparse as sp
    from sklearn.decomposition import TruncatedSVD

    from notefeed.content.kernels import randomized_components

    x = sp.random(*shape, density=0.02, random_state=1, dtype=np.float32, format="csr")
    want = TruncatedSVD(16, algorithm="randomized", n_iter=n_iter, random_state=3).fit(x).components_
    got = randomized_components(lambda v: x @ v, lambda p: x.T @ p, x.shape, 16, n_iter, seed=3)
    assert got.dtype == np.float32 and got.shape == (16, shape[1])
    np.testing.assert_allclose(got, want, atol=1e-6)
    other = randomized_components(lambda v: x @ v, lambda p: x.T @ p, x.shape, 16, n_iter, seed=4)
    assert not np.allclose(np.abs(other[-1]), np.abs(want[-1]), atol=1e-3)  # the seed is the start's
    with pytest.raises(ContentError, match="k:"):
        randomized_components(lambda v: x @ v, lambda p: x.T @ p, x.shape, 0)


def test_word_lists_are_checked_by_fit_words_and_transform_words() -> None:
    """Tokenised texts must be a list of word lists, for fitting and for transforming alike."""
    enc = TextEncoder(dim=4).fit_words([["paris", "pasta"], ["tokyo", "ramen"], ["rome", "pizza"]])
    for bad in ("paris pasta", [["paris"], "pasta"]):
        with pytest.raises(ContentError, match="docs: expected a list of word lists"):
            TextEncoder(dim=4).fit_words(bad)  # type: ignore[arg-type]
        with pytest.raises(ContentError, match="docs: expected a list of word lists"):
            enc.transform_words(bad)  # type: ignore[arg-type]
    assert enc.transform_words([["paris"]]).shape == (1, 4)
