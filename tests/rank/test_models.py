import json

import numpy as np
import pytest
import torch

from notefeed.rank.checkpoint import CheckpointError
from notefeed.rank.features import FeatureBuilder
from notefeed.rank.finenet import FineConfig
from notefeed.rank.metrics import auc
from notefeed.rank.multitask import FineRanker, masked_loss, to_tensors
from notefeed.rank.optim import RowwiseAdam
from notefeed.rank.samples import build_samples


@pytest.fixture(scope="module")
def world(feed):
    fb = FeatureBuilder(feed)
    s = build_samples(feed)
    tr, te = s.split_time(0.25)
    return feed, fb, tr, te


@pytest.mark.parametrize("arch", ["cgc", "ple", "mmoe", "single"])
def test_forward_shapes(world, arch):
    ds, fb, tr, _ = world
    r = FineRanker(FineConfig(arch=arch, dim=8, expert_dim=16))
    net = r.build(fb)
    x = to_tensors(fb.features(tr.users[:7], tr.items[:7], tr.ts[:7]))
    assert net(x).shape == (7, 6)
    p = r.predict(x)
    assert set(p) == set(r.cfg.tasks) and all(v.shape == (7,) for v in p.values())
    assert all(((v >= 0) & (v <= 1)).all() for k, v in p.items() if k != "dwell")


def test_missing_labels_are_masked():
    out = torch.zeros(4, 2, requires_grad=True)
    y = torch.tensor([[1.0, float("nan")], [0.0, float("nan")], [1.0, float("nan")], [float("nan"), float("nan")]])
    loss, parts = masked_loss(out, y, ("click", "like"), {})
    assert "like" not in parts and torch.isfinite(loss)
    loss.backward()
    assert out.grad[:, 1].abs().sum() == 0 and out.grad[3, 0] == 0 and out.grad[0, 0] != 0


def test_training_lowers_loss_and_beats_random(world):
    ds, fb, tr, te = world
    r = FineRanker(FineConfig(arch="cgc", dim=8, expert_dim=32, batch_size=256, epochs=4))
    r.fit(ds, tr, fb)
    assert r.history[-1]["click"] < r.history[0]["click"]
    p = r.predict(fb.features(te.users, te.items, te.ts, te.position, te.surface))
    assert auc(te.labels["click"], p["click"]) > 0.6


def test_rowwise_adam_touches_only_batch_rows_and_matches_adam_first_step():
    torch.manual_seed(0)
    sp = torch.nn.Embedding(50, 4, sparse=True)
    de = torch.nn.Embedding(50, 4)
    de.weight.data.copy_(sp.weight.data)
    before = sp.weight.detach().clone()
    idx = torch.tensor([3, 7, 7, 20])
    o1, o2 = RowwiseAdam(sp.parameters(), lr=0.1), torch.optim.Adam(de.parameters(), lr=0.1)
    for emb, opt in ((sp, o1), (de, o2)):
        (emb(idx) ** 2).sum().backward()
        opt.step()
    changed = (sp.weight.detach() != before).any(1).nonzero().flatten().tolist()
    assert changed == [3, 7, 20]
    torch.testing.assert_close(sp.weight.detach()[[3, 7, 20]], de.weight.detach()[[3, 7, 20]])
    with pytest.raises(ValueError, match="dense gradient"):
        RowwiseAdam(de.parameters()).step()


def test_save_load_round_trip_and_corrupt(world, tmp_path):
    ds, fb, tr, _ = world
    r = FineRanker(FineConfig(arch="ple", dim=8, expert_dim=16, batch_size=512, epochs=1)).fit(ds, tr, fb)
    x = fb.features(tr.users[:20], tr.items[:20], tr.ts[:20])
    r.save(tmp_path / "m")
    r2 = FineRanker.load(tmp_path / "m")
    for k, v in r.predict(x).items():
        np.testing.assert_array_equal(v, r2.predict(x)[k])
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    # bad JSON
    (tmp_path / "m" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="bad JSON"):
        FineRanker.load(tmp_path / "m")
    # mismatched shapes
    cfg["config"]["dim"] = 12
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="shape"):
        FineRanker.load(tmp_path / "m")
    # missing field
    del cfg["config"]["vocab"]
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="vocab"):
        FineRanker.load(tmp_path / "m")
    # truncated tensors
    r.save(tmp_path / "n")
    w = tmp_path / "n" / "model.safetensors"
    w.write_bytes(w.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="unreadable"):
        FineRanker.load(tmp_path / "n")
