"""The built-in model's training schedule, time cap, pooling options and the eval's phase timings."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from notefeed.llm import BuiltinLM, train_builtin
from notefeed.llm.train import lr_factor
from tests.llm.conftest import tiny_config


def test_lr_factor_warms_up_then_anneals_to_the_floor():
    assert lr_factor(0.0) == pytest.approx(0.01)
    assert lr_factor(0.05) == pytest.approx(0.5)
    assert lr_factor(0.1) == pytest.approx(1.0)
    xs = [lr_factor(f) for f in np.linspace(0.1, 1.0, 50)]
    assert all(a >= b for a, b in zip(xs, xs[1:], strict=False))  # monotone after the warm-up
    assert lr_factor(1.0) == pytest.approx(0.05) and lr_factor(2.0) == pytest.approx(0.05)
    assert math.isclose(lr_factor(0.55), 0.05 + 0.95 * 0.5)


def test_time_cap_stops_training_and_reports_it(corpus):
    pairs = np.array([[i, i + 3] for i in range(len(corpus) - 3)], np.int64)
    lm = train_builtin(corpus, pairs, tiny_config(epochs=10_000, max_time_s=1.0))
    assert lm.info["capped"] is True
    assert 0 < lm.info["steps"] < lm.info["planned_steps"]
    assert lm.info["train_cpu_s"] < 30 and lm.info["epochs_done"] == pytest.approx(lm.info["steps"] / 4, abs=0.01)
    full = train_builtin(corpus, pairs, tiny_config(epochs=2))
    assert full.info["capped"] is False and full.info["steps"] == full.info["planned_steps"] == 8


@pytest.mark.parametrize("pool", ["emb+mean", "emb+bow"])
def test_pool_options_train_save_and_load(corpus, pool, tmp_path):
    pairs = np.array([[i, i + 3] for i in range(len(corpus) - 3)], np.int64)
    lm = train_builtin(corpus, pairs, tiny_config(epochs=2, pool=pool))
    z = lm.embed(corpus.texts())
    assert z.shape == (len(corpus), 16) and np.allclose(np.linalg.norm(z, axis=1), 1, atol=1e-5)
    back = BuiltinLM.load(lm.save(tmp_path / "m"))
    assert back.config.pool == pool
    assert np.allclose(back.embed(corpus.texts()[:5]), z[:5], atol=1e-5)
    with pytest.raises(Exception, match="pool"):
        train_builtin(corpus, pairs, tiny_config(epochs=1, pool="max"))


def test_related_note_eval_reports_phases():
    from notefeed.eval.datasets import load_eval_dataset
    from notefeed.llm.evaluate import eval_config, related_note_eval

    ds = load_eval_dataset("sim-tiny", 0, quick=True).subsample_users(100, seed=0)
    # far more epochs than 2 CPU-s can run, so the cap (not a fast machine finishing the one
    # quick epoch first) is what ends training
    cfg = dataclasses.replace(eval_config(True, 0, 2.0), epochs=1000)
    rows = related_note_eval(ds, 0, quick=True, methods=("tfidf", "notellm"), config=cfg)
    assert {r["method"] for r in rows} == {"tfidf", "notellm", "random"}
    ph = rows[0]["phases"]
    for key in ("split_and_pairs", "tfidf_fit", "notellm_train", "notellm_embed", "rank_tfidf_warm"):
        assert ph[key]["wall_s"] >= 0 and ph[key]["cpu_s"] >= 0
    assert rows[0]["eval_cpu_s"] >= ph["notellm_train"]["cpu_s"]
    nl = next(r for r in rows if r["method"] == "notellm")
    assert nl["capped"] is True and nl["steps"] >= 1


def _net(**kw):
    import torch

    from notefeed.llm.net import NoteLMNet

    torch.manual_seed(0)
    return NoteLMNet(vocab=50, dim=16, layers=2, heads=4, max_len=12, n_tags=3, n_cats=2, out_dim=8, **kw)


def _ids(seed: int = 0):
    import torch

    g = np.random.default_rng(seed)
    ids = g.integers(4, 50, (6, 12))
    for i, n in enumerate([12, 9, 5, 2, 12, 7]):
        ids[i, n:] = 0  # right padding
    return torch.from_numpy(ids)


@pytest.mark.parametrize("causal", [False, True])
def test_own_forward_matches_the_torch_module_in_eval_mode(causal):
    """The layers' own forward (SDPA, no per-element dropout draws) is the function of
    nn.TransformerEncoder with the same parameters, on every non-padding position."""
    import torch

    net = _net().eval()
    ids = _ids()
    t = ids.shape[1]
    with torch.no_grad():
        ours = net._states(ids, causal=causal)
        x = net.tok(ids) + net.pos(torch.arange(t))[None]
        mask = torch.ones(t, t, dtype=torch.bool).triu(1) if causal else None
        ref = net.norm(net.stack(x, mask=mask, src_key_padding_mask=ids == 0, is_causal=causal))
    valid = ids != 0
    assert torch.allclose(ours[valid], ref[valid], atol=1e-5)
    # and a change of the weights moves both alike (it is not a copy of one fixed output)
    with torch.no_grad():
        net.stack.layers[0].linear1.weight.mul_(-1.5)
        assert not torch.allclose(net._states(ids, causal=causal)[valid], ours[valid], atol=1e-3)


def test_fast_dropout_keeps_one_minus_p_and_the_mean():
    import torch

    from notefeed.llm.net import fast_dropout

    x = torch.ones(200_000)
    y = fast_dropout(x, 0.1, np.random.default_rng(0))
    keep = (y > 0).float().mean().item()
    assert abs(keep - 0.9) < 0.003
    assert torch.allclose(y[y > 0], torch.full_like(y[y > 0], 1 / 0.9))
    assert abs(y.mean().item() - 1.0) < 0.005
    assert torch.equal(y, fast_dropout(x, 0.1, np.random.default_rng(0)))  # the generator fixes it
    assert not torch.equal(y, fast_dropout(x, 0.1, np.random.default_rng(1)))
    z = torch.ones(7, 3, requires_grad=True)  # odd sizes: bits for a partial last word
    fast_dropout(z, 0.5, np.random.default_rng(2)).sum().backward()
    assert set(torch.unique(z.grad).tolist()) <= {0.0, 2.0}


def test_training_forward_is_seeded_by_torch_and_drops():
    import torch

    net = _net().train()
    ids = _ids()
    torch.manual_seed(5)
    a = net._states(ids, causal=False)
    torch.manual_seed(5)
    b = net._states(ids, causal=False)
    c = net._states(ids, causal=False)
    assert torch.equal(a, b) and not torch.equal(a, c)
    with torch.no_grad():
        assert not torch.allclose(a, net.eval()._states(ids, causal=False))


def test_chunked_lm_backward_gives_the_whole_batch_gradient():
    import torch
    import torch.nn.functional as F

    from notefeed.llm.train import lm_backward

    net = _net(dropout=0.0).train()
    ids = _ids(3)
    h, tgt = net.lm_states(ids[:, :-1]), ids[:, 1:]
    keep = tgt != 0
    ref_loss = F.cross_entropy(h[keep] @ net.tok.weight.T, tgt[keep])
    (0.5 * ref_loss).backward()
    ref = {k: p.grad.clone() for k, p in net.named_parameters() if p.grad is not None}
    net.zero_grad(set_to_none=True)
    got = lm_backward(net, ids, 0.5, chunk=7)  # 7 does not divide the 41 positions with a target
    assert got == pytest.approx(float(ref_loss.detach()), rel=1e-5)
    grads = {k: p.grad for k, p in net.named_parameters() if p.grad is not None}
    assert grads.keys() == ref.keys() and "tok.weight" in grads
    for k in ref:
        assert torch.allclose(grads[k], ref[k], atol=1e-6), k
