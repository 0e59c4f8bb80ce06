"""Note text -> dense vector.

Two encoders with one contract (``fit(texts)``, ``transform(texts) -> (n, dim)`` float32,
rows L2-normalised):

- :class:`TextEncoder`: no pretrained weights needed. Chinese text is segmented with jieba,
  other text lower-cased into word tokens; features are words, word bigrams and character
  n-grams (robust to typos, inflections and jieba's segmentation mistakes), hashed into a
  fixed space (no vocabulary to store), weighted by TF-IDF and projected by a truncated SVD
  fitted on the catalogue (LSA).
- :class:`SentenceTransformerEncoder`: a local sentence-transformers model folder (optional
  extra ``notefeed[content]``); nothing is downloaded.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from notefeed.content._common import (
    ContentError,
    check_texts,
    l2_normalise,
    load_artifact,
    save_artifact,
)

__all__ = [
    "has_cjk",
    "tokenize",
    "text_features",
    "words_features",
    "words_term_weighted",
    "word_features",
    "term_weighted_features",
    "TextEncoderConfig",
    "TextEncoder",
    "SentenceTransformerEncoder",
]

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_WORD = re.compile(r"\w+", re.UNICODE)
_KIND = "notefeed.content.TextEncoder"


def has_cjk(text: str) -> bool:
    """True when ``text`` holds at least one CJK ideograph (then we segment with jieba)."""
    return _CJK.search(text) is not None


def _jieba():  # imported lazily: jieba builds its prefix dictionary on first use (~1 s)
    import jieba

    jieba.setLogLevel(logging.WARNING)
    return jieba


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens; jieba segmentation when the text holds CJK characters.

    Punctuation and whitespace are dropped. ``"今天去上海外滩拍照"`` -> ``["今天", "去", "上海",
    "外滩", "拍照"]``; ``"Best Coffee in Paris!"`` -> ``["best", "coffee", "in", "paris"]``.
    """
    if text is None:
        raise ContentError("text: is None")
    if not isinstance(text, str):
        raise ContentError(f"text: expected str, got {type(text).__name__}")
    if has_cjk(text):
        out = []
        for tok in _jieba().lcut(text):
            tok = tok.strip().lower()
            if tok and _WORD.search(tok):  # drop pure punctuation/whitespace tokens
                out.append(tok)
        return out
    return [w.lower() for w in _WORD.findall(text)]


def text_features(text: str, word_ngrams: int = 2, char_ngrams: tuple[int, int] = (3, 4)) -> list[str]:
    """The sparse features of one text: words, word n-grams and character n-grams.

    Character n-grams are taken inside each boundary-marked word (``<paris>``) for
    alphabetic scripts, and as single characters of multi-character Chinese words, so
    that related words share features. Prefixes keep the feature kinds apart.
    """
    return words_features(tokenize(text), word_ngrams, char_ngrams)


def words_features(words: list[str], word_ngrams: int = 2, char_ngrams: tuple[int, int] = (3, 4)) -> list[str]:
    """:func:`text_features` of an already tokenised text (its words)."""
    feats = list(words)
    for n in range(2, word_ngrams + 1):
        feats.extend(word_ngrams_of(words, n))
    lo, hi = char_ngrams
    for w in words:
        feats.extend(word_features(w, lo, hi)[1:])
    return feats


def word_ngrams_of(words: list[str], n: int) -> list[str]:
    """The word ``n``-gram features of a token list (``"w:best coffee"``)."""
    return ["w:" + " ".join(words[i : i + n]) for i in range(len(words) - n + 1)]


def word_features(w: str, lo: int, hi: int) -> list[str]:
    """A word's features: the word itself, then its character n-grams (``lo`` to ``hi`` inside
    the boundary-marked word for alphabetic scripts; the single characters of a multi-character
    Chinese word; none for a word shorter than ``lo - 1``)."""
    if has_cjk(w):
        return [w] + (["c:" + ch for ch in w] if len(w) > 1 else [])
    if len(w) < lo - 1:
        return [w]
    m = f"<{w}>"
    return [w] + ["c:" + m[i : i + n] for n in range(lo, hi + 1) for i in range(len(m) - n + 1)]


def term_weighted_features(text: str, word_ngrams: int = 2, char_ngrams: tuple[int, int] = (3, 4),
                           sublinear_tf: bool = True) -> dict[str, float]:
    """The features of one text weighted per term (``TextEncoderConfig.tf_scope="term"``): each
    term (a word, a word n-gram) weighs ``log1p(its count in the text)`` (its count without
    ``sublinear_tf``), and each of its features (a word's own and its character n-grams, as
    :func:`text_features` has them; an n-gram's one) gets that weight once per occurrence in
    the term; a feature of several terms sums their weights."""
    return words_term_weighted(tokenize(text), word_ngrams, char_ngrams, sublinear_tf)


def words_term_weighted(words: list[str], word_ngrams: int = 2, char_ngrams: tuple[int, int] = (3, 4),
                        sublinear_tf: bool = True) -> dict[str, float]:
    """:func:`term_weighted_features` of an already tokenised text (its words)."""
    lo, hi = char_ngrams
    out: dict[str, float] = {}
    grams = [g for n in range(2, word_ngrams + 1) for g in word_ngrams_of(words, n)]
    for terms, feats_of in ((words, lambda t: word_features(t, lo, hi)), (grams, lambda t: [t])):
        counts: dict[str, int] = {}
        for t in terms:
            counts[t] = counts.get(t, 0) + 1
        for t, tf in counts.items():
            w = float(np.log1p(tf)) if sublinear_tf else float(tf)
            for f in feats_of(t):
                out[f] = out.get(f, 0.0) + w
    return out


@dataclass
class TextEncoderConfig:
    """Hyper-parameters of :class:`TextEncoder` (all saved with the model)."""

    dim: int = 64  # output dimension (zero-padded when the catalogue has fewer documents)
    n_features: int = 2**15  # hashed feature space
    word_ngrams: int = 2
    char_ngram_min: int = 3
    char_ngram_max: int = 4
    sublinear_tf: bool = True
    #: what the sublinear TF counts: "feature", each hashed feature's count in the text (the
    #: original encoder); "term", each word's and word n-gram's count, every feature of a term
    #: weighted by it (:func:`term_weighted_features`). The two differ only where distinct
    #: terms of a text share a feature (a character n-gram, a hash column); "term" lets a
    #: catalogue be projected one distinct word at a time (notefeed.search.dense)
    tf_scope: str = "feature"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.dim < 1:
            raise ContentError(f"dim: must be >= 1, got {self.dim}")
        if self.n_features < 16:
            raise ContentError(f"n_features: must be >= 16, got {self.n_features}")
        if not 1 <= self.char_ngram_min <= self.char_ngram_max:
            raise ContentError("char_ngram_min/char_ngram_max: need 1 <= min <= max")
        if self.tf_scope not in ("feature", "term"):
            raise ContentError(f"tf_scope: must be 'feature' or 'term', got {self.tf_scope!r}")


def _check_word_lists(docs: object) -> list[list[str]]:
    """``docs`` as tokenised texts (a list of word lists), or :class:`ContentError`."""
    if isinstance(docs, str) or not all(isinstance(d, list) for d in docs):  # type: ignore[attr-defined]
        raise ContentError("docs: expected a list of word lists")
    return docs  # type: ignore[return-value]


def _unit_scales(data: np.ndarray, counts: sp.csr_matrix) -> np.ndarray:
    """(n,) each row's ``1 / norm`` of the values ``data`` on the structure of ``counts``
    (its squares summed in the stored order, which needs no sorted columns)."""
    squares = sp.csr_matrix((data * data, counts.indices, counts.indptr), shape=counts.shape)
    norms = np.sqrt(np.asarray(squares.sum(axis=1)).ravel())
    return (1.0 / np.maximum(norms, 1e-12)).astype(data.dtype)


class TextEncoder:
    """Hashed n-grams -> TF-IDF -> truncated SVD (fitted on the catalogue) -> unit vector."""

    name = "text/tfidf-svd"

    def __init__(self, config: TextEncoderConfig | None = None, **params: object) -> None:
        self.config = config or TextEncoderConfig(**params)  # type: ignore[arg-type]
        self.idf_: np.ndarray | None = None  # (n_features,)
        self.components_: np.ndarray | None = None  # (k, n_features), k <= dim

    @property
    def dim(self) -> int:
        return self.config.dim

    def _counts(self, texts: list[str]) -> sp.csr_matrix:
        """(n, n_features) float32 feature counts through a stable hash (murmur3 via sklearn);
        with ``tf_scope="term"`` the per-term weighted counts (:func:`term_weighted_features`)."""
        return self._word_counts([tokenize(t) for t in texts])

    def _word_counts(self, docs: list[list[str]]) -> sp.csr_matrix:
        """:meth:`_counts` of tokenised texts (each a list of words)."""
        from sklearn.feature_extraction.text import HashingVectorizer

        c = self.config
        if c.tf_scope == "term":  # the TF already applied, per term (weighted counts)
            from sklearn.feature_extraction import FeatureHasher

            fh = FeatureHasher(n_features=c.n_features, input_type="dict", alternate_sign=False, dtype=np.float32)
            return fh.transform(words_term_weighted(w, c.word_ngrams, (c.char_ngram_min, c.char_ngram_max),
                                                    c.sublinear_tf) for w in docs).tocsr()
        hv = HashingVectorizer(
            analyzer=lambda w: words_features(w, c.word_ngrams, (c.char_ngram_min, c.char_ngram_max)),
            n_features=c.n_features,
            alternate_sign=False,
            norm=None,
            dtype=np.float32,
        )
        return hv.transform(docs).tocsr()

    def _tfidf(self, counts: sp.csr_matrix, unit: bool = True) -> sp.csr_matrix:
        """Sublinear TF x IDF, rows at unit norm (``unit``): one float32 product per stored entry
        on the CSR arrays (the values the diagonal products ``diags(1 / norm) @ (x @ diags(idf))``
        give), sharing the counts' column indices; each row's squares summed in its stored
        order, which needs no sorted columns. :meth:`transform` leaves rows unscaled: its
        vectors are normalised after the projection, which the row scale cannot change."""
        assert self.idf_ is not None
        c = self.config
        data = np.log1p(counts.data) if c.sublinear_tf and c.tf_scope == "feature" else counts.data.copy()
        data *= self.idf_[counts.indices]
        if unit:
            data *= np.repeat(_unit_scales(data, counts), np.diff(counts.indptr))
        return sp.csr_matrix((data, counts.indices, counts.indptr), shape=counts.shape)

    def _components_t(self) -> np.ndarray:
        """``components_.T`` as a C-contiguous (n_features, k) array, made once per components
        array: SciPy copies a transposed view on every product (8 MB at 32k features and 64
        dimensions: 1.5 ms of a one-text product here, against 0.007 ms; the same numbers)."""
        assert self.components_ is not None
        src = self.components_
        cache = self.__dict__.get("_ct")
        if cache is None or cache[0] is not src:
            cache = (src, np.ascontiguousarray(src.T))
            self._ct = cache  # one assignment: a reader sees the pair whole
        return cache[1]

    def _project(self, x: sp.csr_matrix) -> np.ndarray:
        """(n, k) float32: the TF-IDF rows onto the SVD components."""
        return np.asarray(x @ self._components_t(), dtype=np.float32)

    def fit(self, texts: list[str]) -> TextEncoder:
        """Learn IDF weights and the SVD projection from the catalogue's texts."""
        return self._fit_counts(self._counts(check_texts(texts, "texts")))

    def fit_words(self, docs: list[list[str]]) -> TextEncoder:
        """:meth:`fit` on tokenised texts (each a list of words)."""
        return self._fit_counts(self._word_counts(_check_word_lists(docs)))

    def _fit_idf(self, counts: sp.csr_matrix) -> None:
        """The IDF weights from the catalogue's feature counts (a column at most once a row)."""
        n = counts.shape[0]
        df = np.bincount(counts.indices, minlength=self.config.n_features).astype(np.float64)
        self.idf_ = (np.log((1.0 + n) / (1.0 + df)) + 1.0).astype(np.float32)

    def _svd_rank(self, counts: sp.csr_matrix) -> int:
        """The SVD's rank for the catalogue's feature ``counts``; 0 when there is nothing to fit
        (one document or no features), the components then set to a zero projection."""
        k = min(self.config.dim, counts.shape[0] - 1, self.config.n_features - 1)
        if k < 1 or counts.nnz == 0:
            self.components_ = np.zeros((1, self.config.n_features), np.float32)
            return 0
        return k

    def _fit_counts(self, counts: sp.csr_matrix) -> TextEncoder:
        """:meth:`fit` from the catalogue's feature counts (:meth:`_counts`)."""
        from sklearn.decomposition import TruncatedSVD

        counts.sort_indices()  # the SVD's sums in column order, whoever counted
        self._fit_idf(counts)
        k = self._svd_rank(counts)
        if not k:
            return self
        x = self._tfidf(counts)
        svd = TruncatedSVD(n_components=k, algorithm="randomized", n_iter=5, random_state=self.config.seed)
        svd.fit(x)
        self.components_ = svd.components_.astype(np.float32)
        return self

    def transform(self, texts: list[str]) -> np.ndarray:
        """(n, dim) float32, rows L2-normalised (all-zero for a text with no known features)."""
        if self.components_ is None or self.idf_ is None:
            raise ContentError("TextEncoder: call fit() or load() before transform()")
        return self._finish(self._unnormalised(check_texts(texts, "texts")))

    def transform_words(self, docs: list[list[str]]) -> np.ndarray:
        """:meth:`transform` of tokenised texts (each a list of words: the text's
        :func:`tokenize`, or any analysis of it)."""
        if self.components_ is None or self.idf_ is None:
            raise ContentError("TextEncoder: call fit() or load() before transform_words()")
        return self._finish(self._project(self._tfidf(self._word_counts(_check_word_lists(docs)), unit=False)))

    def _finish(self, z: np.ndarray) -> np.ndarray:
        """(n, dim) float32 from the (n, k) projections: zero-padded, rows at unit norm."""
        out = np.zeros((z.shape[0], self.config.dim), np.float32)
        out[:, : z.shape[1]] = z
        return l2_normalise(out)

    def _unnormalised(self, texts: list[str]) -> np.ndarray:
        """(n, k) the texts' projections before padding and normalising."""
        return self._project(self._tfidf(self._counts(texts), unit=False))

    def fit_transform(self, texts: list[str]) -> np.ndarray:
        return self.fit(texts).transform(texts)

    # ------------------------------------------------------------------ persistence
    def save(self, folder: str | Path) -> Path:
        if self.components_ is None or self.idf_ is None:
            raise ContentError("TextEncoder: nothing to save, call fit() first")
        cfg = {"config": asdict(self.config), "k": int(self.components_.shape[0])}
        return save_artifact(folder, _KIND, cfg, {"idf": self.idf_, "components": self.components_})

    @classmethod
    def load(cls, folder: str | Path) -> TextEncoder:
        cfg, t = load_artifact(folder, _KIND, {"idf": (-1,), "components": (-1, -1)})
        try:
            config = TextEncoderConfig(**cfg["config"])
        except (KeyError, TypeError) as e:
            raise ContentError(f"{Path(folder) / 'config.json'}: field 'config' is incomplete ({e})") from None
        f = config.n_features
        if t["idf"].shape != (f,) or t["components"].shape[1] != f or t["components"].shape[0] > config.dim:
            raise ContentError(
                f"{Path(folder) / 'weights.safetensors'}: tensor shapes idf {t['idf'].shape}, components "
                f"{t['components'].shape} do not match config n_features={f}, dim={config.dim}"
            )
        enc = cls(config)
        enc.idf_, enc.components_ = t["idf"].astype(np.float32), t["components"].astype(np.float32)
        return enc


class SentenceTransformerEncoder:
    """A local sentence-transformers model folder as a note encoder (optional dependency).

    ``model_path`` must be a folder saved with ``SentenceTransformer.save``; this class never
    downloads. ``fit`` is a no-op (pretrained) kept for the common contract.
    """

    name = "text/sentence-transformer"

    def __init__(self, model_path: str | Path, device: str = "cpu", batch_size: int = 64) -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError(
                "SentenceTransformerEncoder needs the optional extra: pip install 'notefeed[content]'"
            ) from e
        path = Path(model_path)
        if not path.is_dir():
            raise ContentError(f"model_path: {path} is not a folder (pretrained weights are never downloaded)")
        try:
            self.model = SentenceTransformer(str(path), device=device, local_files_only=True)
        except Exception as e:  # the library raises many types for a broken folder
            raise ContentError(f"model_path: could not load a sentence-transformers model from {path}: {e}") from e
        self.batch_size = batch_size
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        dim = get_dim()
        if dim is None:
            dim = int(self.model.encode(["x"], convert_to_numpy=True).shape[1])
        self.dim = int(dim)

    def fit(self, texts: list[str]) -> SentenceTransformerEncoder:
        check_texts(texts, "texts")
        return self

    def transform(self, texts: list[str]) -> np.ndarray:
        texts = check_texts(texts, "texts")
        z = self.model.encode(
            texts, batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False
        )
        return l2_normalise(np.asarray(z, dtype=np.float32))

    def fit_transform(self, texts: list[str]) -> np.ndarray:
        return self.transform(texts)
