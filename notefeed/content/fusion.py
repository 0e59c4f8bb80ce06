"""Fuse a note's modalities into one content vector.

A note has a title, a body and zero or more images. Fusion happens in two steps:

1. intra-modal: the mean of a note's (unit) image vectors (:func:`pool_images`); a weighted
   sum of title and body vectors (:func:`combine_title_body`), since titles are short and dense;
2. inter-modal: either a fixed weighted concatenation (:func:`fuse_concat`, whose cosine is the
   weighted mean of per-modality cosines) followed by an optional projection fitted on the
   catalogue (:class:`ContentFusion`), or a learned gated sum (:class:`GatedFusion`, a torch
   module trained inside :class:`~notefeed.content.cb2cf.CB2CF` from collaborative signal).

Image vectors are precomputed (any encoder, any dimension, e.g. CLIP); notes without images
fall back to text alone rather than to a zero image block that would drag their cosine down.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from notefeed.content._common import ContentError, check_matrix, l2_normalise

__all__ = ["pool_images", "combine_title_body", "fuse_concat", "ContentFusion", "GatedFusion"]


def pool_images(images: Sequence[np.ndarray | None], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of each note's unit-normalised image vectors.

    ``images[i]`` is ``None``/empty (no image), a ``(dim,)`` vector or an ``(m_i, dim)`` array.
    Returns ``(vectors (n, dim) float32 unit rows or zeros, has_image (n,) bool)``.
    """
    if isinstance(images, np.ndarray) and images.ndim == 2:
        images = list(images)
    if not isinstance(images, Sequence):
        raise ContentError(f"images: expected a list with one entry per note, got {type(images).__name__}")
    n = len(images)
    out = np.zeros((n, dim), np.float32)
    has = np.zeros(n, bool)
    for i, im in enumerate(images):
        if im is None:
            continue
        a = np.asarray(im, dtype=np.float32)
        if a.size == 0:
            continue
        if a.ndim == 1:
            a = a[None, :]
        a = check_matrix(a, f"images[{i}]", dim=dim)
        out[i] = l2_normalise(a).mean(axis=0)
        has[i] = True
    return l2_normalise(out), has


def combine_title_body(title: np.ndarray, body: np.ndarray, title_weight: float = 0.6) -> np.ndarray:
    """Weighted sum of unit title and body vectors, re-normalised. (n, d), (n, d) -> (n, d).

    A note with an empty body (zero vector) is represented by its title alone and vice versa.
    """
    if not 0.0 <= title_weight <= 1.0:
        raise ContentError(f"title_weight: must be in [0, 1], got {title_weight}")
    t = check_matrix(title, "title")
    b = check_matrix(body, "body", dim=t.shape[1], rows=t.shape[0])
    return l2_normalise(title_weight * l2_normalise(t) + (1.0 - title_weight) * l2_normalise(b))


def fuse_concat(
    text: np.ndarray,
    image: np.ndarray | None = None,
    has_image: np.ndarray | None = None,
    image_weight: float = 0.3,
) -> np.ndarray:
    """Concatenate unit text and image vectors with weights ``sqrt(1-w)`` and ``sqrt(w)``.

    For two notes that both have images, the cosine of the result is
    ``(1 - w) * cos_text + w * cos_image``. Notes without an image get the text block alone
    (scaled to unit norm). Shapes: text (n, d_t), image (n, d_i), has_image (n,) -> (n, d_t + d_i).
    """
    t = l2_normalise(check_matrix(text, "text"))
    if image is None:
        return t
    if not 0.0 <= image_weight <= 1.0:
        raise ContentError(f"image_weight: must be in [0, 1], got {image_weight}")
    im = l2_normalise(check_matrix(image, "image", rows=t.shape[0]))
    has = np.linalg.norm(im, axis=1) > 0 if has_image is None else np.asarray(has_image, bool)
    if has.shape != (t.shape[0],):
        raise ContentError(f"has_image: expected shape ({t.shape[0]},), got {has.shape}")
    wt = np.where(has, np.sqrt(1.0 - image_weight), 1.0)[:, None]
    wi = np.where(has, np.sqrt(image_weight), 0.0)[:, None]
    return np.hstack([t * wt, im * wi]).astype(np.float32)


class ContentFusion:
    """Weighted concatenation (:func:`fuse_concat`) + a linear projection fitted on the catalogue.

    The projection is a truncated SVD of the fused catalogue matrix: it keeps the directions
    along which notes differ and brings any ``d_t + d_i`` down to ``dim``.
    """

    name = "fusion/concat-svd"

    def __init__(self, dim: int = 64, image_weight: float = 0.3, seed: int = 0) -> None:
        if dim < 1:
            raise ContentError(f"dim: must be >= 1, got {dim}")
        self.dim, self.image_weight, self.seed = dim, image_weight, seed
        self.mean_: np.ndarray | None = None
        self.components_: np.ndarray | None = None  # (k, d_t + d_i)
        self.text_dim_: int | None = None
        self.image_dim_: int | None = None

    def fit(self, text: np.ndarray, image: np.ndarray | None = None, has_image: np.ndarray | None = None) -> ContentFusion:
        from sklearn.decomposition import TruncatedSVD

        x = fuse_concat(text, image, has_image, self.image_weight)
        self.text_dim_ = int(np.asarray(text).shape[1])
        self.image_dim_ = None if image is None else int(np.asarray(image).shape[1])
        self.mean_ = x.mean(axis=0)
        k = min(self.dim, x.shape[0] - 1, x.shape[1] - 1)
        if k < 1:
            self.components_ = np.eye(1, x.shape[1], dtype=np.float32)
            return self
        svd = TruncatedSVD(n_components=k, random_state=self.seed).fit(x - self.mean_)
        self.components_ = svd.components_.astype(np.float32)
        return self

    def transform(
        self, text: np.ndarray, image: np.ndarray | None = None, has_image: np.ndarray | None = None
    ) -> np.ndarray:
        """(n, dim) float32 unit rows."""
        if self.components_ is None or self.mean_ is None:
            raise ContentError("ContentFusion: call fit() before transform()")
        check_matrix(text, "text", dim=self.text_dim_)
        if (image is None) != (self.image_dim_ is None):
            raise ContentError("image: must be given at transform() exactly when it was given at fit()")
        if image is not None:
            check_matrix(image, "image", dim=self.image_dim_)
        x = fuse_concat(text, image, has_image, self.image_weight)
        z = (x - self.mean_) @ self.components_.T
        out = np.zeros((x.shape[0], self.dim), np.float32)
        out[:, : z.shape[1]] = z
        return l2_normalise(out)


class GatedFusion(nn.Module):
    """Learned gated sum of a text and an image vector (a torch module).

    ``h = (1 - g) * W_t t + g * W_i i`` with ``g = sigmoid(w . [t; i] + b)`` per note and
    ``g = 0`` for notes without an image, so the model decides per note how much the image
    should count. Shapes: text (B, d_t), image (B, d_i), has_image (B,) -> (B, out_dim).
    """

    def __init__(self, text_dim: int, image_dim: int, out_dim: int) -> None:
        super().__init__()
        self.text_proj = nn.Linear(text_dim, out_dim)
        self.image_proj = nn.Linear(image_dim, out_dim)
        self.gate = nn.Linear(text_dim + image_dim, 1)

    def forward(self, text: torch.Tensor, image: torch.Tensor, has_image: torch.Tensor) -> torch.Tensor:
        g = torch.sigmoid(self.gate(torch.cat([text, image], dim=1))) * has_image.float().unsqueeze(1)
        return (1.0 - g) * self.text_proj(text) + g * self.image_proj(image)
