"""sequence/sasrec's sparse item table (sampled loss + RowwiseAdam): same gradients as the dense
loss, learns the planted rule, and leaves the full-softmax path untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from notefeed.rank.optim import RowwiseAdam
from notefeed.recall import SASRecChannel
from notefeed.recall._sasrec_net import SASRecNet, sampled_ce_loss, sampled_ce_loss_sparse
from tests.recall.test_sequential import PARAMS, cycle_log, next_note_accuracy


def _weights(ch: SASRecChannel) -> dict[str, np.ndarray]:
    return ch.to_state()[1]


def test_sparse_loss_has_the_dense_loss_and_gradient():
    torch.manual_seed(0)
    net = SASRecNet(500, 16, 1, 2, 8, 0.0)
    seq = torch.randint(1, 501, (6, 8))
    y = torch.randint(0, 500, (48,))
    y[:5] = y[5]  # repeated targets: their gradients must add up

    def run(sparse: bool) -> tuple[float, torch.Tensor]:
        net.zero_grad(set_to_none=True)
        net.item.sparse = sparse
        h = net(seq).reshape(-1, 16)
        gen = torch.Generator().manual_seed(3)
        loss = (sampled_ce_loss_sparse(h, y, net.item.weight, 64, gen) if sparse
                else sampled_ce_loss(h, y, net.item_weight, 64, gen))
        loss.backward()
        g = net.item.weight.grad
        assert g.is_sparse == sparse
        return loss.item(), g.to_dense() if sparse else g.clone()

    (l_d, g_d), (l_s, g_s) = run(False), run(True)
    assert l_s == pytest.approx(l_d, rel=1e-6)
    assert torch.allclose(g_s, g_d, atol=1e-7, rtol=1e-5)
    touched = int((g_d.abs().sum(1) > 0).sum())
    assert 0 < touched < 501  # a batch touches some rows, not the table


def test_sparse_fit_learns_the_planted_next_note_and_differs_from_dense():
    ds = cycle_log()
    kw = {**PARAMS, "loss": "sampled", "n_negatives": 8}
    sparse = SASRecChannel(**kw).fit(ds)  # sparse_items "auto"
    dense = SASRecChannel(**kw, sparse_items=False).fit(ds)
    assert sparse.sparse_used and not dense.sparse_used
    assert sparse.loss_used == dense.loss_used == "sampled"
    assert next_note_accuracy(sparse, ds, +1) >= 0.8
    assert next_note_accuracy(dense, ds, +1) >= 0.8
    assert not np.array_equal(sparse.item_vectors, dense.item_vectors)


def test_full_softmax_fit_is_the_same_whatever_sparse_items_says():
    ds = cycle_log(n_users=60)
    kw = {**PARAMS, "epochs": 3}
    runs = [SASRecChannel(**kw, sparse_items=s).fit(ds) for s in ("auto", True, False)]
    assert all(ch.loss_used == "ce" and not ch.sparse_used for ch in runs)
    ref = _weights(runs[-1])
    for ch in runs[:-1]:
        got = _weights(ch)
        assert got.keys() == ref.keys()
        assert all(np.array_equal(got[k], ref[k]) for k in ref)


def test_rows_outside_every_batch_keep_their_initial_value():
    """Lazy Adam: a note never in a sequence nor drawn as a negative is not moved; the rest are."""
    rng = np.random.default_rng(0)
    seqs = [(rng.integers(24) + np.arange(8)) % 24 for _ in range(40)]  # notes 0..23 of 200
    kw = {**PARAMS, "epochs": 2, "loss": "sampled", "n_negatives": 1, "seed": 1}
    ch = SASRecChannel(**kw).fit_sequences(seqs, 200)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(kw["seed"])
        init = SASRecNet(200, ch.dim, ch.layers, ch.heads, ch.max_len, ch.dropout).item_weight.detach().numpy()
    same = (ch.item_vectors == init).all(1)
    n_steps = 2 * 2  # 2 epochs of 2 batches, one negative each
    assert ch.sparse_used and not same[:24].any()
    assert same[24:].sum() >= 176 - n_steps


def test_rowwise_adam_weight_decay_shrinks_only_the_rows_of_the_batch():
    emb = torch.nn.Embedding(10, 4, sparse=True)
    w0 = emb.weight.detach().clone()
    opt = RowwiseAdam(emb.parameters(), lr=0.1, weight_decay=0.5)
    emb(torch.tensor([2, 5])).sum().backward()
    opt.step()
    plain = torch.nn.Embedding(10, 4, sparse=True)
    plain.weight.data.copy_(w0)
    plain(torch.tensor([2, 5])).sum().backward()
    RowwiseAdam(plain.parameters(), lr=0.1).step()
    rows = [2, 5]
    others = [i for i in range(10) if i not in rows]
    assert torch.equal(emb.weight[others], w0[others])
    assert torch.allclose(emb.weight[rows] - plain.weight[rows], -0.1 * 0.5 * w0[rows], atol=1e-6)
    with pytest.raises(ValueError):
        RowwiseAdam(emb.parameters(), weight_decay=-1.0)


@pytest.mark.parametrize("bad", ["yes", 1.5, None])
def test_rejects_bad_sparse_items(bad):
    with pytest.raises(ValueError, match="sparse_items"):
        SASRecChannel(sparse_items=bad)


def test_item_table_rate_defaults_to_lr_over_one_minus_beta1_and_honours_sparse_lr():
    net = SASRecNet(10, 8, 1, 2, 4, 0.0)
    dense, rows = SASRecChannel(lr=1e-3)._optimisers(net, sparse=True)
    assert isinstance(rows, RowwiseAdam) and net.item.sparse
    assert rows.defaults["lr"] == pytest.approx(1e-3 / (1 - dense.defaults["betas"][0]))
    assert all(p is not net.item.weight for g in dense.param_groups for p in g["params"])
    assert SASRecChannel(lr=1e-3, sparse_lr=5e-3)._optimisers(net, sparse=True)[1].defaults["lr"] == 5e-3
    (only,) = SASRecChannel(lr=1e-3, sparse_lr=5e-3)._optimisers(net, sparse=False)
    assert not net.item.sparse and only.defaults["lr"] == 1e-3
    with pytest.raises(ValueError, match="sparse_lr"):
        SASRecChannel(sparse_lr=0.0)
