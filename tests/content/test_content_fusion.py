from __future__ import annotations

import numpy as np
import pytest
import torch

from notefeed.content import (
    ContentError,
    ContentFusion,
    GatedFusion,
    combine_title_body,
    fuse_concat,
    pool_images,
)


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_pool_images_means_unit_vectors_and_flags_missing():
    rng = np.random.default_rng(0)
    imgs = [rng.normal(size=(3, 5)), None, rng.normal(size=5), np.zeros((0, 5))]
    v, has = pool_images(imgs, dim=5)
    assert v.shape == (4, 5) and has.tolist() == [True, False, True, False]
    np.testing.assert_allclose(v[0], _unit(_unit(imgs[0]).mean(0, keepdims=True))[0], rtol=1e-5)
    assert np.allclose(v[1], 0)


def test_pool_images_wrong_dim_names_the_note():
    with pytest.raises(ContentError, match=r"images\[1\].*dimension 5, got 4"):
        pool_images([np.ones(5), np.ones((2, 4))], dim=5)
    with pytest.raises(ContentError, match=r"images\[0\].*NaN"):
        pool_images([np.array([np.nan] * 5)], dim=5)


def test_fuse_concat_cosine_is_weighted_mean_of_modalities():
    rng = np.random.default_rng(1)
    t, im = rng.normal(size=(2, 6)), rng.normal(size=(2, 3))
    z = fuse_concat(t, im, image_weight=0.3)
    ct = (_unit(t)[0] * _unit(t)[1]).sum()
    ci = (_unit(im)[0] * _unit(im)[1]).sum()
    assert z.shape == (2, 9)
    assert abs((z[0] * z[1]).sum() - (0.7 * ct + 0.3 * ci)) < 1e-5
    # a note without an image keeps unit norm (text only)
    z2 = fuse_concat(t, im, has_image=np.array([True, False]))
    np.testing.assert_allclose(np.linalg.norm(z2, axis=1), 1.0, atol=1e-5)
    assert np.allclose(z2[1, 6:], 0)


def test_fuse_concat_bad_shapes_name_the_field():
    with pytest.raises(ContentError, match="image: expected 2 rows"):
        fuse_concat(np.ones((2, 3)), np.ones((3, 3)))
    with pytest.raises(ContentError, match="text: expected a 2-d"):
        fuse_concat(np.ones(3))


def test_combine_title_body_falls_back_to_title_when_body_empty():
    t = np.array([[1.0, 0.0], [1.0, 0.0]])
    b = np.array([[0.0, 1.0], [0.0, 0.0]])
    z = combine_title_body(t, b, title_weight=0.5)
    np.testing.assert_allclose(z[1], [1.0, 0.0])
    np.testing.assert_allclose(z[0], _unit(np.array([[1.0, 1.0]]))[0], rtol=1e-6)


def test_content_fusion_projects_to_dim_and_checks_image_dim():
    rng = np.random.default_rng(2)
    t, im = rng.normal(size=(40, 10)), rng.normal(size=(40, 7))
    f = ContentFusion(dim=5).fit(t, im)
    z = f.transform(t[:3], im[:3])
    assert z.shape == (3, 5)
    with pytest.raises(ContentError, match="image: expected dimension 7"):
        f.transform(t[:3], im[:3, :6])


def test_gated_fusion_ignores_image_when_absent():
    g = GatedFusion(4, 3, 5)
    t, im = torch.randn(2, 4), torch.randn(2, 3)
    out = g(t, im, torch.tensor([False, True]))
    assert out.shape == (2, 5)
    torch.testing.assert_close(out[0], g.text_proj(t)[0])
