"""``rank/ltr``: a listwise learned ranker over candidate features (coarse and fine stages).

Trained on samples that look like serving: one *group* per training point, holding every
candidate the project's own recall returned for that user at that moment (hard negatives)
and the item the user actually chose next. Features are named columns (each channel's
rank-normalised score, CF and sequence-model scores of every candidate, item and user
statistics as of that moment); the network is a small MLP on standardised features. The
loss is the softmax cross-entropy of the chosen item against the group's candidates
(sampled when a group is large) — the listwise objective for logs of positives only.

Logs with impressions (the simulator's, a served log) also say which candidates the user
*saw and passed over* on the page where the chosen item was engaged with (``Group.neg``):
a second softmax term, weighted by ``impression_weight``, ranks the chosen item above those
real negatives only. Candidates in general may simply never have been shown; these were, so
this term learns what makes a shown note engaged with rather than what makes a note shown.

Validation: the latest ``valid_frac`` of groups by time; early stopping on the validation
groups' HR@10 *within the full candidate list* (what the stage decides), which is saved
with the model (``metrics``), with the AUC of the chosen item against the page's passed-over
candidates where the groups have them (``valid_page_auc``).

With ``bag`` and a gate that passes, the gate's fold models (each trained on all groups but
one fold, as many steps as the model) are kept beside the model and the served score is the
mean of all ``gate_folds + 1`` networks' scores: a bagged ensemble that costs no training
beyond the gate's own.

The model is a pure function of a feature matrix: the serving side (``serve/learned.py``)
assembles the matrix from the candidate set by :attr:`ListwiseRanker.feature_names`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from notefeed.rank.base import SCORERS

__all__ = ["LTRConfig", "Group", "ListwiseRanker"]


@dataclass
class LTRConfig:
    """Training settings of :class:`ListwiseRanker` (the defaults were measured best)."""

    hidden: int = 64
    epochs: int = 40
    lr: float = 3e-3
    weight_decay: float = 1e-5
    batch_groups: int = 128
    negatives: int = 100          # candidates sampled per group per step (all when fewer)
    patience: int = 4             # epochs without validation gain before stopping
    valid_frac: float = 0.1
    seed: int = 0
    #: torch threads while fitting: the ops are small (a 128-group batch, one candidate set),
    #: so a second thread mostly waits at barriers; on a busy 2-core box 2 threads took 8x
    #: the wall time of 1 (1,500 groups x 5 epochs: 18.3 s against 2.2 s)
    threads: int = 1
    #: a feature whose raw value is the base logit (the fine stage: ``stage.coarse``, the
    #: coarse ranker's score), or ``{feature: weight}`` (a weighted sum of raw features): the
    #: network learns a zero-initialised correction to it, and validation starts from the
    #: base order, so on the validation groups the model keeps its input stage's order unless
    #: training beats it. None (the default, measured best: docs/feed.md "Feed quality"): learn the
    #: score from scratch, ``stage.coarse`` one feature of it
    residual: str | dict[str, float] | None = None
    #: with ``residual``: count the untrained model (the base order itself) in early stopping,
    #: so a correction that never beats the base on validation is dropped
    keep_base: bool = True
    #: weight of the impression term (the chosen item against the candidates shown beside it
    #: and passed over, ``Group.neg``); groups without such candidates (logs of positives
    #: only) are unaffected. 0 (the default) turns it off: at 1, in closed loop on the
    #: simulator, CTR was not shown to change and interest coverage fell (docs/feed.md "Feed quality")
    impression_weight: float = 0.0
    #: the score the model must beat: a feature whose raw value is the input stage's score
    #: (``stage.coarse`` for the fine stage), or ``{feature: weight}``, a weighted sum of raw
    #: features (the coarse stage: the ``builtin/popularity`` formula over its ``base.*``
    #: features, ``notefeed.models.train``). After training,
    #: ``gate_folds``-fold cross-validation over *all* groups (each fold's model trained for
    #: as many steps as the fit took) compares the model's HR@10 on the held-out folds with
    #: that score's; a model that does not beat it (by ``gate_z``) is replaced by the score itself (a zero
    #: correction to it), so the stage serves that score. All groups, not the latest
    #: 10%: the time-ordered validation split of a small log holds about 200 groups, too few to
    #: see a difference of 0.01. The default, measured best (docs/feed.md "Feed quality": LastFM
    #: page HR@10 0.117 -> 0.126, ml-100k and ml-latest-small unchanged); None: no gate. A
    #: score using a feature the model lacks: no gate either
    gate: str | dict[str, float] | None = "stage.coarse"
    gate_folds: int = 5
    #: the gate passes the model only if its out-of-fold gain is significant: the paired
    #: per-group hit difference (model - input score) over all groups, mean / standard error
    #: above this (1.645: one-sided 5%). 0: any gain passes (the gate before; a noise-level
    #: gain then lowered the page's HR@10 in 3 of 22 seed runs, docs/feed.md "Feed quality")
    gate_z: float = 1.645
    #: with a gate that passes: serve the mean score of the model and the gate's
    #: ``gate_folds`` fold models (kept instead of set aside; the online updates train each).
    #: Off here; on for the served coarse ranker (``models.train.ranker_config``; docs/feed.md
    #: "Feed quality", rounds 26-27)
    bag: bool = False


@dataclass
class Group:
    """One training point: candidate features ``x`` (m, f), the chosen row ``pos``, its time,
    and the rows ``neg`` of candidates shown beside the chosen one and passed over (empty
    when the log has no impressions)."""

    x: np.ndarray
    pos: int
    ts: float = 0.0
    neg: np.ndarray | None = None


class _Net(nn.Module):
    """MLP + linear path on standardised features; with ``base`` (feature indices and their
    weights) the output is a correction added to that weighted sum of the *raw* features."""

    def __init__(self, n_in: int, hidden: int, base: tuple[list[int], list[float]] | None = None) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden // 2), nn.ReLU(),
                                 nn.Linear(hidden // 2, 1))
        self.lin = nn.Linear(n_in, 1)  # a linear path: the MLP learns corrections to it
        self.base = base
        if base is not None:  # a residual model starts as exactly its base score
            # derived from the config, not saved with the weights (a saved model loads as before)
            self.register_buffer("base_idx", torch.tensor(base[0], dtype=torch.long), persistent=False)
            self.register_buffer("base_w", torch.tensor(base[1], dtype=torch.float32), persistent=False)
            for layer in (self.mlp[-1], self.lin):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

    def forward(self, z: torch.Tensor, raw: torch.Tensor | None = None) -> torch.Tensor:
        out = (self.mlp(z) + self.lin(z)).squeeze(-1)
        if self.base is not None:
            if raw is None:
                raise ValueError("rank/ltr: a residual model needs the raw features")
            out = out + (raw[..., self.base_idx] * self.base_w).sum(-1)
        return out


def _hr(scores: np.ndarray, pos: int, k: int = 10) -> float:
    return float((scores > scores[pos]).sum() < k)


def gate_z(diff: np.ndarray) -> float:
    """Mean over standard error of paired per-group differences: 0 with fewer than two groups
    or when all are 0 (no evidence), +-inf when all are the same nonzero value."""
    n = len(diff)
    if n < 2:
        return 0.0
    sd = float(diff.std(ddof=1))
    mean = float(diff.mean())
    if sd == 0.0:
        return 0.0 if mean == 0.0 else float(np.sign(mean) * np.inf)
    return mean / (sd / np.sqrt(n))


def _page_auc(scores: np.ndarray, pos: int, neg: np.ndarray) -> float:
    """Share of the passed-over candidates ``neg`` scored below the chosen one (ties: half)."""
    s = scores[neg]
    return float(((s < scores[pos]).sum() + 0.5 * (s == scores[pos]).sum()) / len(neg))


def _negs(g: Group) -> np.ndarray:
    return g.neg[g.neg != g.pos] if g.neg is not None and len(g.neg) else np.empty(0, np.int64)


@SCORERS.register("rank/ltr")
class ListwiseRanker:
    """Scores candidates from named features; see the module docstring."""

    name = "rank/ltr"

    def __init__(self, feature_names: Sequence[str] = (), cfg: LTRConfig | None = None, **params: Any) -> None:
        self.cfg = cfg or LTRConfig(**params)
        self.feature_names = list(feature_names)
        self.mean = np.zeros(len(self.feature_names), np.float32)
        self.std = np.ones(len(self.feature_names), np.float32)
        self.net: _Net | None = None
        #: with ``cfg.bag``: the gate's fold models beside ``net`` (network, mean, std each)
        self.members: list[tuple[_Net, np.ndarray, np.ndarray]] = []
        self._bag_cache: tuple[tuple[int, ...], tuple[torch.Tensor, ...]] | None = None  # _bag_predict's
        self.metrics: dict[str, float] = {}
        self.version = "rank/ltr"

    # ------------------------------------------------------------------ training
    def fit(self, groups: Sequence[Group], progress: bool = True, desc: str = "rank/ltr") -> ListwiseRanker:
        if not self.feature_names:
            raise ValueError("rank/ltr: no feature names")
        groups = [g for g in groups if 0 <= g.pos < len(g.x)]
        if len(groups) < 10:
            raise ValueError(f"rank/ltr: {len(groups)} training groups with a recalled target; need >= 10")
        c = self.cfg
        torch.manual_seed(c.seed)
        threads_before = torch.get_num_threads()
        torch.set_num_threads(max(1, c.threads))
        try:
            self._fit(groups, progress, desc)
        finally:
            torch.set_num_threads(threads_before)
        return self

    def _fit(self, groups: Sequence[Group], progress: bool, desc: str) -> None:
        c = self.cfg
        self.members, self._bag_cache = [], None
        rng = np.random.default_rng(c.seed)
        order = np.argsort([g.ts for g in groups], kind="stable")
        n_valid = max(1, int(len(groups) * c.valid_frac))
        train = [groups[i] for i in order[:-n_valid]]
        valid = [groups[i] for i in order[-n_valid:]]
        opt = self._new_net(train)
        m = c.negatives + 1
        best, best_state, stale, t0 = -1.0, None, 0, time.perf_counter()
        start = best
        if self.net.base is not None:  # the untrained model scores exactly its base
            start = float(np.mean([_hr(self.predict(g.x), g.pos) for g in valid]))
            if c.keep_base:  # the base order is the score to beat
                best, best_state = start, {k: v.detach().clone() for k, v in self.net.state_dict().items()}
        bar = tqdm(range(c.epochs), desc=desc, disable=None if progress else True, leave=False)
        epochs_run = best_epoch = 0
        for _ep in bar:
            epochs_run += 1
            self._epoch(train, m, rng, opt)
            hr = float(np.mean([_hr(self.predict(g.x), g.pos) for g in valid]))
            bar.set_postfix(valid_hr10=f"{hr:.4f}")
            if hr > best:
                best, stale, best_epoch = hr, 0, epochs_run
                best_state = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
            else:
                stale += 1
                if stale >= c.patience:
                    break
        if best_state is not None:
            self.net.load_state_dict(best_state)
        base = float(np.mean([_hr(-np.arange(len(g.x), dtype=np.float32), g.pos) for g in valid]))
        self.metrics = {}
        paged = [g for g in valid if len(_negs(g))]
        if paged:  # how well the chosen note is told from the ones shown beside it and passed over
            self.metrics["valid_page_auc"] = float(np.mean([_page_auc(self.predict(g.x), g.pos, _negs(g))
                                                            for g in paged]))
            self.metrics["valid_page_groups"] = float(len(paged))
        self.metrics |= {"valid_hr10_in_candidates": best, "valid_hr10_input_order": base,
                        **({"valid_hr10_residual_base": start} if self.net.base is not None else {}),
                        "train_groups": float(len(train)), "valid_groups": float(len(valid)),
                        "train_page_groups": float(sum(len(_negs(g)) > 0 for g in train)),
                        "epochs": float(epochs_run), "fit_s": time.perf_counter() - t0}
        gate = self._terms(c.gate) if c.gate is not None else None
        if gate is not None:
            self._gate(list(groups), max(1, best_epoch), rng, gate)
            self.metrics["fit_s"] = time.perf_counter() - t0

    def _new_net(self, train: Sequence[Group]) -> torch.optim.Optimizer:
        """A fresh network with the feature normalisation of ``train``; its optimiser."""
        allx = np.concatenate([g.x for g in train])
        self.mean = allx.mean(0).astype(np.float32)
        self.std = np.maximum(allx.std(0), 1e-6).astype(np.float32)
        del allx
        self.net = _Net(len(self.feature_names), self.cfg.hidden, self._base_terms())
        return torch.optim.Adam(self.net.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)

    def _epoch(self, train: Sequence[Group], m: int, rng: np.random.Generator, opt: torch.optim.Optimizer) -> None:
        """One pass over ``train`` in random order, ``cfg.batch_groups`` groups a step."""
        assert self.net is not None
        self.net.train()
        perm = rng.permutation(len(train))
        for b in range(0, len(perm), self.cfg.batch_groups):
            self._step([train[i] for i in perm[b: b + self.cfg.batch_groups]], m, rng, opt)

    def _gate(self, groups: list[Group], epochs: int, rng: np.random.Generator,
              terms: tuple[list[int], list[float]]) -> None:
        """Cross-validate against the raw input score ``cfg.gate`` (its ``terms``, :meth:`_terms`);
        fall back to it unless beaten."""
        c = self.cfg
        assert self.net is not None
        gi, gw = np.asarray(terms[0]), np.asarray(terms[1], np.float32)
        k = max(2, c.gate_folds)
        fold = rng.permutation(len(groups)) % k
        kept = (self.net, self.mean, self.std)
        hits, base = [], []
        m = c.negatives + 1
        folds: list[tuple[_Net, np.ndarray, np.ndarray]] = []
        for f in range(k):
            train = [g for g, fi in zip(groups, fold, strict=True) if fi != f]
            test = [g for g, fi in zip(groups, fold, strict=True) if fi == f]
            opt = self._new_net(train)
            for _ep in range(int(np.ceil(epochs * k / (k - 1)))):  # as many steps as the fit took
                self._epoch(train, m, rng, opt)
            hits += [_hr(self.predict(g.x), g.pos) for g in test]
            base += [_hr((np.asarray(g.x[:, gi], np.float32) * gw).sum(1), g.pos) for g in test]
            folds.append((self.net, self.mean, self.std))
        self.net, self.mean, self.std = kept
        model_hr, base_hr = float(np.mean(hits)), float(np.mean(base))
        z = gate_z(np.asarray(hits, np.float64) - np.asarray(base, np.float64))
        passed = model_hr > base_hr and z > c.gate_z
        self.metrics |= {"gate_oof_hr10": model_hr, "gate_oof_base_hr10": base_hr, "gate_folds": float(k),
                         "gate_groups": float(len(groups)), "gate_z": z, "gate_passed": float(passed)}
        if passed and c.bag:  # the fold models serve beside the model
            self.members = folds
            self.metrics["bag_networks"] = float(1 + len(folds))
        if not passed:  # the stage serves the gate's score: a zero correction to it
            self.cfg = dataclasses.replace(c, residual=c.gate)
            self.net = _Net(len(self.feature_names), c.hidden, terms)

    def _step(self, batch: Sequence[Group], m: int, rng: np.random.Generator, opt: torch.optim.Optimizer) -> float:
        """One optimiser step of the listwise loss on ``batch``: each group's chosen row
        against up to ``m - 1`` sampled others (plus the impression term). Returns the
        batch's mean loss."""
        loss = self._chosen_ce([(g, np.delete(np.arange(len(g.x)), g.pos)) for g in batch], m, rng) / len(batch)
        if self.cfg.impression_weight > 0:
            # each group's chosen row against its passed-over candidates (``Group.neg``), over
            # the groups that have them, divided by the batch size: such a group weighs here
            # what it weighs in the main term
            paged = [(g, n) for g, n in ((g, _negs(g)) for g in batch) if len(n)]
            if paged:
                w = min(m, 1 + max(len(n) for _, n in paged))
                loss = loss + self.cfg.impression_weight * self._chosen_ce(paged, w, rng) / len(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    def _chosen_ce(self, pairs: Sequence[tuple[Group, np.ndarray]], width: int, rng: np.random.Generator
                   ) -> torch.Tensor:
        """Summed softmax cross-entropy of each group's chosen row against its rows ``others``
        (sampled down to ``width - 1``)."""
        xb = np.zeros((len(pairs), width, len(self.feature_names)), np.float32)
        mask = np.zeros((len(pairs), width), bool)
        for r, (g, others) in enumerate(pairs):
            if len(others) > width - 1:
                others = rng.choice(others, width - 1, replace=False)
            rows = np.concatenate([[g.pos], others])
            xb[r, : len(rows)] = g.x[rows]
            mask[r, : len(rows)] = True
        assert self.net is not None
        logits = self.net(torch.from_numpy((xb - self.mean) / self.std), torch.from_numpy(xb))
        logits = logits.masked_fill(~torch.from_numpy(mask), -1e9)
        return nn.functional.cross_entropy(logits, torch.zeros(len(pairs), dtype=torch.long), reduction="sum")

    def copy(self) -> ListwiseRanker:
        """An independent copy (weights, normalisation, metrics): train it while this one serves."""
        return type(self).from_state(*self.to_state())

    def update(self, groups: Sequence[Group], passes: int = 2, lr: float = 1e-3, seed: int = 0) -> dict[str, float]:
        """Continue training on ``groups`` (the online trainer's labelled pages): ``passes``
        passes of the same listwise loss, Adam at ``lr``, the feature normalisation kept (so
        the served scale does not jump). Returns the mean loss of the first and last pass."""
        if self.net is None:
            raise RuntimeError("rank/ltr: update() before fit()")
        groups = [g for g in groups if 0 <= g.pos < len(g.x) and len(g.x) > 1]
        if not groups:
            return {"groups": 0.0}
        c = self.cfg
        rng = np.random.default_rng(seed)
        threads_before = torch.get_num_threads()
        torch.set_num_threads(1)  # beside serving: never take the request threads' cores
        main = (self.net, self.mean, self.std)
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                m = min(c.negatives + 1, max(len(g.x) for g in groups))
                for j, (net, mean, std) in enumerate([main, *self.members]):  # a bag: every network
                    self.net, self.mean, self.std = net, mean, std
                    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=c.weight_decay)
                    net_losses: list[float] = []
                    net.train()
                    for _ in range(max(1, passes)):
                        total, perm = 0.0, rng.permutation(len(groups))
                        for b in range(0, len(perm), c.batch_groups):
                            batch = [groups[i] for i in perm[b: b + c.batch_groups]]
                            total += self._step(batch, m, rng, opt) * len(batch)
                        net_losses.append(total / len(groups))
                    net.eval()
                    if j == 0:
                        losses = net_losses
        finally:
            self.net, self.mean, self.std = main
            self._bag_cache = None  # the weights changed in place
            torch.set_num_threads(threads_before)
        return {"groups": float(len(groups)), "loss_first": losses[0], "loss_last": losses[-1]}

    # ------------------------------------------------------------------ serving
    def predict(self, x: np.ndarray) -> np.ndarray:
        """``x`` (n, len(feature_names)) -> (n,) float32 scores (higher is better)."""
        if self.net is None:
            raise RuntimeError("rank/ltr: predict() before fit()")
        if x.ndim != 2 or x.shape[1] != len(self.feature_names):
            raise ValueError(f"rank/ltr: features shape {x.shape}, expected (n, {len(self.feature_names)})")
        raw = torch.from_numpy(np.asarray(x, np.float32))
        with torch.inference_mode():
            if self.members:  # a bag: the mean score of its networks, in one pass
                return self._bag_predict(raw).numpy().astype(np.float32)
            self.net.eval()
            z = torch.from_numpy(((x - self.mean) / self.std).astype(np.float32))
            return self.net(z, raw).numpy().astype(np.float32)

    def _bag_predict(self, raw: torch.Tensor) -> torch.Tensor:
        """The mean of the bag's networks' scores, all networks at once: each network's input
        standardisation folded into its first layer and linear path (``(x - m) / s @ W.T ==
        x @ (W / s).T - (W / s) @ m``), the first layers one product, the rest batched. Equal
        to averaging :meth:`predict` of each network up to float rounding (a test checks it);
        several times faster than network by network (the ops are small)."""
        nets = [(self.net, self.mean, self.std), *self.members]
        key = tuple(id(a) for t in nets for a in t)
        if self._bag_cache is None or self._bag_cache[0] != key:
            w1, b1, w2, b2, w3, b3, wl, bl = ([] for _ in range(8))
            for net, mean, std in nets:
                assert net is not None
                l1, l2, l3 = net.mlp[0], net.mlp[2], net.mlp[4]
                w = l1.weight.detach() / torch.from_numpy(std)
                w1.append(w)
                b1.append(l1.bias.detach() - w @ torch.from_numpy(mean))
                w2.append(l2.weight.detach().T)
                b2.append(l2.bias.detach()[None])
                w3.append(l3.weight.detach().T)
                b3.append(l3.bias.detach()[None])
                v = net.lin.weight.detach() / torch.from_numpy(std)
                wl.append(v)
                bl.append(net.lin.bias.detach() - v @ torch.from_numpy(mean))
            arrays = (torch.cat(w1).T.contiguous(), torch.cat(b1), torch.stack(w2), torch.stack(b2),
                      torch.stack(w3), torch.stack(b3), torch.cat(wl).T.contiguous(), torch.cat(bl))
            self._bag_cache = (key, arrays)
        w1c, b1c, w2s, b2s, w3s, b3s, wlc, blc = self._bag_cache[1]
        m, n = len(nets), raw.shape[0]
        h = torch.relu(raw @ w1c + b1c).view(n, m, -1).transpose(0, 1)  # (m, n, hidden)
        h = torch.relu(torch.bmm(h, w2s) + b2s)  # (m, n, hidden / 2)
        out = (torch.bmm(h, w3s) + b3s).squeeze(-1).T + (raw @ wlc + blc)  # (n, m)
        out = out.mean(1)
        if self.net.base is not None:  # every network adds the same base score
            out = out + (raw[..., self.net.base_idx] * self.net.base_w).sum(-1)
        return out

    def _terms(self, spec: str | dict[str, float]) -> tuple[list[int], list[float]] | None:
        """A score spec (one feature's name, or ``{name: weight}``: a weighted sum of raw
        features) as feature indices and weights; None when a named feature is not among the
        model's features."""
        items = [(spec, 1.0)] if isinstance(spec, str) else list(dict(spec).items())
        if not items or any(name not in self.feature_names for name, _ in items):
            return None
        return [self.feature_names.index(name) for name, _ in items], [float(w) for _, w in items]

    def _base_terms(self) -> tuple[list[int], list[float]] | None:
        if self.cfg.residual is None:
            return None
        terms = self._terms(self.cfg.residual)
        if terms is None:
            raise ValueError(f"rank/ltr: residual score {self.cfg.residual!r} uses a feature that is not among "
                             f"the features")
        return terms

    # ------------------------------------------------------------------ persistence
    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        if self.net is None:
            raise RuntimeError("rank/ltr: to_state() before fit()")
        arrays = {f"net.{k}": v.detach().numpy().copy() for k, v in self.net.state_dict().items()}
        arrays.update(mean=self.mean, std=self.std)
        for j, (net, mean, std) in enumerate(self.members):  # a bag's fold models: member<j>.*
            arrays.update({f"member{j}.net.{k}": v.detach().numpy().copy() for k, v in net.state_dict().items()})
            arrays.update({f"member{j}.mean": mean, f"member{j}.std": std})
        params = {"feature_names": self.feature_names, "cfg": dataclasses.asdict(self.cfg),
                  "metrics": self.metrics, "version": self.version, "members": len(self.members)}
        return params, arrays

    def _load_net(self, arrays: dict[str, np.ndarray], prefix: str) -> _Net:
        """A network from the saved arrays under ``<prefix>net.``."""
        net = _Net(len(self.feature_names), self.cfg.hidden, self._base_terms())
        head = f"{prefix}net."
        net.load_state_dict({k[len(head):]: torch.from_numpy(np.array(v)) for k, v in arrays.items()
                             if k.startswith(head)})
        return net

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> ListwiseRanker:
        try:
            obj = cls(params["feature_names"], LTRConfig(**params.get("cfg", {})))
            obj.mean = np.asarray(arrays["mean"], np.float32)
            obj.std = np.asarray(arrays["std"], np.float32)
            obj.net = obj._load_net(arrays, "")
            for j in range(int(params.get("members", 0))):
                obj.members.append((obj._load_net(arrays, f"member{j}."),
                                    np.asarray(arrays[f"member{j}.mean"], np.float32),
                                    np.asarray(arrays[f"member{j}.std"], np.float32)))
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise ValueError(f"rank/ltr: saved state does not match the code ({e})") from None
        obj.metrics = dict(params.get("metrics", {}))
        obj.version = str(params.get("version", "rank/ltr"))
        return obj
