"""The seesaw guard: how auxiliary tasks' gradients reach the shared layers (rank/taskgrad.py)."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from notefeed.rank.evaluate import mean_ci, summarize
from notefeed.rank.finenet import FineConfig
from notefeed.rank.layers import CGC, PLE, MMoE, SingleTask, make_towers
from notefeed.rank.metrics import auc
from notefeed.rank.multitask import masked_loss, positives
from notefeed.rank.taskgrad import TaskGrad, combine


def test_combine_keeps_main_scales_aux_and_removes_only_the_conflicting_part():
    gm = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    ga = torch.tensor([[-1.0, 1.0], [1.0, 1.0], [3.0, -4.0]])  # rows 0 and 2 oppose the main task
    assert torch.equal(combine([gm, ga], 0, (1.0, 0.0), project=False), gm)
    torch.testing.assert_close(combine([gm, ga], 0, (1.0, 0.5), project=False), gm + 0.5 * ga)
    out = combine([gm, ga], 0, (1.0, 1.0), project=True)
    # conflicting rows: the aux part along the main row is removed, the orthogonal part kept
    torch.testing.assert_close(out, torch.tensor([[1.0, 1.0], [2.0, 1.0], [3.0, 2.0]]))
    assert ((out - gm) * gm).sum(1).min() >= 0


def _block(kind, tg):
    kw = {"n_shared": 1, "n_specific": 1, "n_experts": 2, "task_grad": tg}
    return {"cgc": CGC, "ple": PLE, "mmoe": MMoE, "single": SingleTask}[kind](2, 4, 3, **kw)


def _own_head(block):
    """The auxiliary task's own parameters (its gate, or its MLP for SingleTask)."""
    if isinstance(block, SingleTask):
        return block.nets[1]
    if isinstance(block, MMoE):
        return block.gates[1]
    return block.layers[-1].gates[1]  # CGC / PLE


@pytest.mark.parametrize("kind", ["cgc", "ple", "mmoe", "single"])
def test_aux_scale_zero_stops_its_gradient_into_shared_input_but_trains_its_own_head(kind):
    torch.manual_seed(0)
    x = torch.randn(16, 4, requires_grad=True)
    for scale, reaches_input in ((0.0, False), (1.0, True)):
        block = _block(kind, TaskGrad((1.0, scale), main=0))
        x.grad = None
        block(x)[1].sum().backward()  # the auxiliary task's output only
        assert (x.grad is not None and x.grad.abs().sum() > 0) == reaches_input
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in _own_head(block).parameters())
        # the main task's gradient always reaches the input
        x.grad = None
        block(x)[0].sum().backward()
        assert x.grad.abs().sum() > 0


def test_forward_is_identical_whatever_the_rule():
    torch.manual_seed(0)
    x = torch.randn(8, 4, requires_grad=True)
    torch.manual_seed(1)
    a = CGC(2, 4, 3, task_grad=TaskGrad((1.0, 0.0), project=True))
    torch.manual_seed(1)
    b = CGC(2, 4, 3)
    for u, v in zip(a(x), b(x), strict=True):
        assert torch.equal(u, v)


def test_auto_aux_grad_is_the_label_evidence_ratio():
    y = torch.tensor([[1.0, 0.0, float("nan")], [1.0, 1.0, 0.0], [0.0, 0.0, 2.0], [1.0, 0.0, 1.0]])
    pos = positives(y, ("click", "like", "dwell"))
    assert pos == {"click": 3.0, "like": 1.0, "dwell": 2.0}
    tg = FineConfig(tasks=("click", "like", "dwell")).task_grad(pos)
    assert tg.main == 0 and tg.scales == pytest.approx((1.0, 1 / 3, 2 / 3))
    tg = FineConfig(tasks=("click", "like", "dwell"), main_task="like").task_grad(pos)
    assert tg.main == 1 and tg.scales == (1.0, 1.0, 1.0)  # capped at 1
    assert FineConfig(tasks=("click", "like"), aux_grad=0.25).task_grad(pos).scales == (1.0, 0.25)
    with pytest.raises(ValueError, match="main_task"):
        FineConfig(tasks=("click",), main_task="like")
    with pytest.raises(ValueError, match="aux_grad"):
        FineConfig(aux_grad=2.0)


def _planted(n=1500, seed=0):
    """Main task on x0, auxiliary task on x1 (labelled on 30% of rows), both through one shared
    1-d bottleneck: summed losses must trade the main task away; the guard must not."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    y_main = (torch.rand(n, generator=g) < torch.sigmoid(4 * x[:, 0])).float()
    y_aux = (torch.rand(n, generator=g) < torch.sigmoid(4 * x[:, 1])).float()
    y_aux[torch.rand(n, generator=g) > 0.3] = float("nan")
    return x, torch.stack([y_main, y_aux], 1)


def _train_main_auc(tg, tasks=("click", "like"), weights=None, steps=150):
    x, y = _planted()
    torch.manual_seed(0)
    enc = nn.Linear(6, 1)  # the shared layer both tasks would like to own
    block = CGC(len(tasks), 1, 8, task_grad=tg)
    towers = make_towers(len(tasks), 8, 8)
    params = [*enc.parameters(), *block.parameters(), *towers.parameters()]
    opt = torch.optim.Adam(params, lr=0.03)
    for _ in range(steps):
        out = torch.cat([t(h) for t, h in zip(towers, block(enc(x)), strict=True)], 1)
        loss, _ = masked_loss(out, y[:, :len(tasks)], tasks, weights or {"like": 3.0})
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        out = torch.cat([t(h) for t, h in zip(towers, block(enc(x)), strict=True)], 1)
    return auc(y[:, 0].numpy(), out[:, 0].numpy())


def test_planted_seesaw_summed_losses_lose_the_main_task_and_the_guard_keeps_it():
    alone = _train_main_auc(TaskGrad.plain(1), tasks=("click",))
    plain = _train_main_auc(TaskGrad.plain(2))
    guarded = _train_main_auc(TaskGrad((1.0, 0.0)))
    assert alone > 0.8
    assert plain < alone - 0.05  # the seesaw is really planted
    assert guarded > alone - 0.01


def test_summary_means_intervals_and_paired_difference():
    rows = []
    for s, (m_auc, s_auc) in enumerate([(0.80, 0.81), (0.82, 0.80), (0.84, 0.84)]):
        rows.append({"dataset": "d", "model": "cgc", "seed": s, "main_task": "pv", "pv_auc": m_auc, "buy_auc": 0.7})
        rows.append({"dataset": "d", "model": "single", "seed": s, "main_task": "pv", "pv_auc": s_auc, "buy_auc": 0.6})
    rows.append({"dataset": "d", "seed": 3, "error": "boom"})
    out = {r["model"]: r for r in summarize(rows)}
    half = 2.0 * 4.302652729911275 * 0.01 / math.sqrt(3)  # sd of (0.80, 0.82, 0.84) is 0.02
    assert out["cgc"]["pv_auc"] == pytest.approx(0.82) and out["cgc"]["pv_auc_ci95"] == pytest.approx(half)
    assert out["cgc"]["pv_auc_minus_single"] == pytest.approx(np.mean([-0.01, 0.02, 0.0]))
    assert out["cgc"]["pv_auc_minus_single_per_seed"] == pytest.approx([-0.01, 0.02, 0.0])
    assert out["cgc"]["sparse_task_wins_vs_single"] == "3/3"
    assert "pv_auc_minus_single" not in out["single"]
    assert mean_ci([0.5])[0] == 0.5 and math.isnan(mean_ci([0.5])[1])


def test_rank_stage_takes_seeds_from_the_cli():
    import notefeed.rank  # noqa: F401  (registers the stage)
    from notefeed.eval.cli import parse_ks
    from notefeed.eval.stages import stage_options

    assert "seeds" in stage_options("rank")
    assert parse_ks("0,1,2", "seeds", positive=False) == [0, 1, 2]
    with pytest.raises(ValueError, match="--seeds"):
        parse_ks("0,-1", "seeds", positive=False)
    with pytest.raises(ValueError, match="--k: cut-offs must be positive"):
        parse_ks("0")
