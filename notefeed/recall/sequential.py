"""``sequence/sasrec``: a SASRec-style causal transformer over the user's positive notes.

Fit reads every user's positives in time order (one entry per note, at its first positive),
keeps the last ``max_len + 1`` and trains next-item prediction at every position. The
default loss is the full softmax cross-entropy over the catalogue, which is what makes
SASRec beat BERT4Rec (Petrov & Macdonald, RecSys 2023, "Turning Dross Into Gold Loss");
``loss="sampled"`` uses ``n_negatives`` uniform negatives shared by the batch instead, for
catalogues too large for a full softmax per step. On that path the item table gets sparse
gradients and a row-wise lazy Adam (``sparse_items``): a step then updates the rows of its batch,
not the whole catalogue's table and its Adam moments.

Serving encodes ``ctx.history`` (the last ``max_len`` known notes), takes the hidden state of
the newest position and scores every note by a dot product with the tied item embeddings.
The same logits are a ranking feature (:meth:`SASRecChannel.score_items`) and the item
embeddings a similarity space (:attr:`SASRecChannel.item_vectors`).
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from notefeed.data.dataset import Dataset
from notefeed.rank.optim import RowwiseAdam, adamw, split_params
from notefeed.recall._common import excluded_items, positive_log, topk, user_histories
from notefeed.recall._sasrec_net import (
    SASRecEnsemble,
    SASRecNet,
    full_ce_loss,
    sampled_ce_loss,
    sampled_ce_loss_sparse,
)
from notefeed.recall.ann import ANN_KEY, AnnIndex, ann_over
from notefeed.recall.base import CHANNELS, Candidates, UserContext

__all__ = ["SASRecChannel", "training_sequences", "log_sequences", "native_bf16"]

LOSSES = ("ce", "sampled")
#: an ensemble's network j trains with seed ``seed + j x this``: the ensembles of nearby seeds
#: (``notefeed eval --seeds 0,1,2``) share no network
_MEMBER_SEED_STEP = 7919


def training_sequences(ds: Dataset, engine: Any = None) -> list[np.ndarray]:
    """Per-user item indices oldest first, one entry per note at its first positive (int64).
    ``engine``: a batch engine (:mod:`notefeed.batch`) that builds them sharded by user (the
    same arrays)."""
    log = positive_log(ds)  # time-ordered; ties keep the dataset's stable event order
    if engine is not None:
        return engine.sequences(log["user"].to_numpy(), log["item"].to_numpy(), log["ts"].to_numpy(), ds.n_users)
    return log_sequences(log, ds.n_users)


def log_sequences(log: pd.DataFrame, n_users: int) -> list[np.ndarray]:
    """:func:`training_sequences` of a time-ordered positive log (``user, item, ts``)."""
    return user_histories(log.drop_duplicates(["user", "item"], keep="first"), n_users)


@CHANNELS.register("sequence/sasrec")
@dataclass(eq=False)
class SASRecChannel:
    """Next-note recall from a causal transformer (see the module docstring).

    ``epochs`` is sized so Amazon Beauty (22k users, 12k notes) trains in about three
    minutes on two CPU cores; ``max_time_s`` stops training early at a wall-clock cap.
    ``device="cuda"`` trains on a GPU when one is available; serving always runs on the CPU,
    where one request is a millisecond or two. ``bf16`` runs the training forward pass in
    bfloat16 autocast (``None``: where the hardware has native bf16, which about halves the
    cost of the full softmax; the loss and all weights stay float32). ``threads`` (1 or 2)
    caps the torch threads while training: 1 by default, because on a shared 2-core machine
    two threads wait on each other at every op (a Beauty fit took 33 min under load with 2,
    against ~4 min for 1 thread on a quiet machine).
    """

    dim: int = 64
    layers: int = 2
    heads: int = 2
    max_len: int = 50
    dropout: float = 0.1
    epochs: int = 10
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.0
    seed: int = 0
    loss: str = "ce"
    n_negatives: int = 256
    device: str = "cpu"
    bf16: bool | None = None
    threads: int = 1
    #: at least this many optimiser steps (more epochs on a small log, at most 200; 0: off;
    #: the default serving config asks for 3,000) ...
    min_steps: int = 0
    #: ... on logs of fewer training sequences (users) than this only: ml-latest-small's 610
    #: users gained from it (HR@10 1.27x -> 1.49x the best baseline), the 3,000-user `demo`
    #: log overfit (35 epochs: HR@10 of the channel 0.019 against 0.0375 with 10, at 3.5x the time)
    min_steps_below: int = 2000
    max_time_s: float | None = None
    #: the largest catalogue trained with the full softmax; larger ones use the sampled loss
    #: (a step costs batch tokens x notes: 100k notes of full softmax is ~1.7 h on 2 cores,
    #: the sampled loss minutes; every real log evaluated here is below it)
    full_ce_max: int = 50_000
    #: from this many notes recall searches an HNSW index over the item embeddings (exact
    #: scoring of every note below: at 1M notes that alone is ~10 ms a request)
    hnsw_min: int = 200_000
    #: the item table's optimiser on the sampled-loss path: ``"auto"`` (or ``True``) gives it
    #: sparse gradients and :class:`~notefeed.rank.optim.RowwiseAdam` (lazy Adam: only the rows
    #: of the batch, their moments and step counts move; ``weight_decay`` decays those rows
    #: only), the rest of the network AdamW as before; ``False``: AdamW over the whole table
    #: (dense: at 1M notes x 64 dims every step updates 64M weights and both moments). The
    #: full-softmax path (catalogues <= ``full_ce_max``) always trains dense: its loss touches
    #: every row anyway, and its weights are unchanged by this option.
    sparse_items: str | bool = "auto"
    #: the row-wise Adam's learning rate (``None``: ``lr / (1 - beta1)`` = 10 x ``lr``). Lazy
    #: Adam moves a row only on the steps that see it, where dense Adam keeps moving it on its
    #: momentum for ~1/(1 - beta1) steps after; at ``lr`` itself a planted-rule log of 100k
    #: notes learnt nothing in 2 epochs (held-out HR@10 0.000, dense 0.501), at 10 x ``lr`` it
    #: reached 0.634 (docs/results/recall/sasrec_sparse_quality_100k.json)
    sparse_lr: float | None = None
    progress: bool = True
    #: networks trained with seeds ``seed``, ``seed + 7919``, ... and served as one whose scores are
    #: the sum of their logits (their states and item tables concatenated: ``ensemble x dim``
    #: wide vectors); training time scales with it, ``max_time_s`` caps each network
    ensemble: int = 1
    #: train an ensemble's networks at once, each in a forked process with one torch thread
    #: (as many at a time as ``notefeed.threads.default_workers``: every core, at most 4): the
    #: same weights as one after another, in about ``1 / ensemble`` of the wall time where the
    #: cores are free. Only on the CPU with ``threads: 1``, where fork exists, and not inside a
    #: worker process
    parallel: bool = True
    n_items: int = field(default=0, init=False)

    name: ClassVar[str] = "sequence/sasrec"
    #: minutes to train: `notefeed train` fits it, `serve` never does at start-up
    offline_only: ClassVar[bool] = True

    def __post_init__(self) -> None:
        for key in ("dim", "layers", "heads", "max_len", "epochs", "batch_size", "n_negatives", "threads", "ensemble"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"{self.name}: '{key}' must be >= 1, got {getattr(self, key)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"{self.name}: 'dropout' must be in [0, 1), got {self.dropout}")
        if self.min_steps < 0 or self.min_steps_below < 0:
            raise ValueError(f"{self.name}: 'min_steps' and 'min_steps_below' must be >= 0")
        if self.lr <= 0 or (self.sparse_lr is not None and self.sparse_lr <= 0):
            raise ValueError(f"{self.name}: 'lr' and 'sparse_lr' must be > 0, got {self.lr}, {self.sparse_lr}")
        if self.loss not in LOSSES:
            raise ValueError(f"{self.name}: 'loss' must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.sparse_items not in ("auto", True, False):
            raise ValueError(f"{self.name}: 'sparse_items' must be 'auto', true or false, got {self.sparse_items!r}")
        if self.max_time_s is not None and self.max_time_s <= 0:
            raise ValueError(f"{self.name}: 'max_time_s' must be > 0, got {self.max_time_s}")
        #: a batch engine (``notefeed.batch``) builds the training sequences sharded by user
        #: (equal arrays); the model itself trains in this process
        self.engine: Any = None
        self._net: SASRecNet | SASRecEnsemble | None = None
        self._memo: tuple[bytes, np.ndarray] | None = None
        self._items: np.ndarray | None = None  # (n_items, dim x ensemble) float32 output embeddings
        self._ann: AnnIndex | None = None
        self._umemo: tuple[bytes, np.ndarray] | None = None
        self.train_s = 0.0  # summed over the networks
        self.train_workers = 1  # processes the networks trained in
        self.epochs_run = 0
        self.loss_used = self.loss
        self.sparse_used = False

    # ------------------------------------------------------------------ training
    def fit(self, ds: Dataset) -> SASRecChannel:
        return self.fit_sequences(training_sequences(ds, self.engine), ds.n_items)

    def fit_sequences(self, seqs: list[np.ndarray], n_items: int) -> SASRecChannel:
        """Train on item sequences (each oldest first, indices in ``[0, n_items)``)."""
        self.n_items = int(n_items)
        inp, tgt, lens = _pack([np.asarray(s, np.int64) for s in seqs], self.max_len)
        dev = _resolve_device(self.device)
        seeds = [self.seed + _MEMBER_SEED_STEP * j for j in range(self.ensemble)]
        workers = self._member_workers(dev)
        threads = torch.get_num_threads()
        torch.set_num_threads(min(self.threads, 2))
        members, train_s, epochs_run = [], 0.0, 0
        try:
            if workers > 1:
                members, train_s, epochs_run = self._train_forked(inp, tgt, lens, seeds, workers)
            else:
                for seed in seeds:
                    members.append(self._train_member(inp, tgt, lens, dev, seed).cpu())
                    train_s, epochs_run = train_s + self.train_s, epochs_run + self.epochs_run
        finally:
            torch.set_num_threads(threads)
        self.train_s, self.epochs_run = train_s, epochs_run  # summed over the networks
        self.train_workers = workers
        self._set_net(members[0] if self.ensemble == 1 else SASRecEnsemble(members))
        return self

    def _member(self, init: bool = True) -> SASRecNet:
        return SASRecNet(self.n_items, self.dim, self.layers, self.heads, self.max_len, self.dropout, init)

    def _train_member(self, inp: np.ndarray, tgt: np.ndarray, lens: np.ndarray, dev: torch.device,
                      seed: int) -> SASRecNet:
        """One network trained with ``seed`` (its initialisation, dropout and batch order); the
        caller's torch random state is left as it was."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = self._member()
            self._train(net.to(dev), inp, tgt, lens, dev, seed)
        return net

    def _member_workers(self, dev: torch.device) -> int:
        """Processes to train the ensemble's networks in (1: here, one after another)."""
        import multiprocessing as mp

        from notefeed.threads import default_workers

        if not self.parallel or self.ensemble < 2 or dev.type != "cpu" or self.threads != 1:
            return 1
        if mp.current_process().daemon:  # a pool worker cannot fork workers of its own
            return 1
        return min(self.ensemble, default_workers())

    def _train_forked(self, inp: np.ndarray, tgt: np.ndarray, lens: np.ndarray, seeds: list[int],
                      workers: int) -> tuple[list[SASRecNet], float, int]:
        """The networks of ``seeds`` trained in ``workers`` forked processes (one torch thread
        each, as :meth:`_train_member` runs with ``threads: 1``); (networks, summed training
        seconds, summed epochs)."""
        from notefeed.threads import forked_imap

        global _FORK_JOB
        _FORK_JOB = (self, inp, tgt, lens)
        members, train_s, epochs_run = [], 0.0, 0
        try:
            for state, took, epochs, loss_used, sparse_used in forked_imap(_train_forked_member,
                                                                          list(enumerate(seeds)), workers):
                with torch.random.fork_rng(devices=[]):  # the weights are overwritten: no draw kept
                    net = self._member()
                net.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
                net.item.sparse = sparse_used
                members.append(net)
                train_s, epochs_run = train_s + took, epochs_run + epochs
                self.loss_used, self.sparse_used = loss_used, sparse_used
        finally:
            _FORK_JOB = None
        return members, train_s, epochs_run

    def _new_net(self) -> SASRecNet | SASRecEnsemble:
        """A network of this configuration to load a state into (its tables left uninitialised)."""
        if self.ensemble == 1:
            return self._member(init=False)
        return SASRecEnsemble([self._member(init=False) for _ in range(self.ensemble)])

    def _train(self, net: SASRecNet, inp: np.ndarray, tgt: np.ndarray, lens: np.ndarray, dev: torch.device,
               seed: int) -> None:
        rng = np.random.default_rng(seed)
        gen = torch.Generator().manual_seed(seed)
        n_batches = -(-len(lens) // self.batch_size)
        # a small log gets as many optimiser steps as a large one would in a few epochs
        min_steps = self.min_steps if len(lens) < self.min_steps_below else 0
        epochs = max(self.epochs, min(200, -(-min_steps // max(1, n_batches))))
        amp = _use_bf16(dev) if self.bf16 is None else self.bf16
        # the full softmax is (batch tokens x catalogue) logits per step: beyond ``full_ce_max``
        # notes (0.3 GB and ~0.5 s a step at 1,600 tokens x 50k) the sampled loss is used instead
        full_ce = self.loss == "ce" and self.n_items <= self.full_ce_max
        self.loss_used = "ce" if full_ce else "sampled"
        opts = self._optimisers(net, sparse=not full_ce and self.sparse_items in ("auto", True))
        bar = tqdm(total=epochs * n_batches, desc=self.name, unit="batch",
                   disable=None if self.progress else True, leave=False)
        t0 = time.perf_counter()
        net.train()
        self.epochs_run, capped = 0, False
        for _ in range(epochs if len(lens) else 0):
            for rows in _batches(lens, self.batch_size, rng):
                if self.max_time_s is not None and time.perf_counter() - t0 > self.max_time_s:
                    capped = True
                    break
                loss = self._step(net, opts, inp, tgt, lens, rows, dev, full_ce, amp, gen)
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
            self.epochs_run += 1  # a capped epoch counts
            if capped:
                break
        bar.close()
        self.train_s = time.perf_counter() - t0

    def _step(self, net: SASRecNet, opts: list[torch.optim.Optimizer], inp: np.ndarray, tgt: np.ndarray,
              lens: np.ndarray, rows: np.ndarray, dev: torch.device, full_ce: bool, amp: bool,
              gen: torch.Generator) -> torch.Tensor:
        """One optimiser step on the batch ``rows`` of the packed sequences; returns the loss."""
        t = int(lens[rows].max())
        seq = torch.from_numpy(inp[rows, :t]).to(dev)
        y = torch.from_numpy(tgt[rows, :t]).to(dev)
        real = y >= 0
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            h, y = net(seq)[real], y[real]
            if full_ce:
                loss = full_ce_loss(h, y, net.item_weight)
            elif self.sparse_used:
                loss = sampled_ce_loss_sparse(h, y, net.item.weight, self.n_negatives, gen)
            else:
                loss = sampled_ce_loss(h, y, net.item_weight, self.n_negatives, gen)
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in opts:
            opt.step()
        return loss

    def _optimisers(self, net: SASRecNet, sparse: bool) -> list[torch.optim.Optimizer]:
        """AdamW over ``net`` (dense); with ``sparse``, the item table's lookups turn sparse and
        it goes to :class:`RowwiseAdam` instead (sets :attr:`sparse_used`)."""
        self.sparse_used = sparse
        net.item.sparse = sparse
        if not sparse:
            return [adamw(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)]
        sp, de = split_params(net)
        dense = adamw(de, lr=self.lr, weight_decay=self.weight_decay)
        beta1 = dense.defaults["betas"][0]
        slr = self.sparse_lr if self.sparse_lr is not None else self.lr / (1 - beta1)
        return [dense, RowwiseAdam(sp, lr=slr, betas=dense.defaults["betas"], weight_decay=self.weight_decay)]

    def _set_net(self, net: SASRecNet | SASRecEnsemble, ann: np.ndarray | None = None) -> None:
        """Serve ``net``; ``ann``: its item table's stored HNSW index (built when not given)."""
        self._net = net.eval()
        with torch.inference_mode():
            self._items = np.ascontiguousarray(net.item_weight.numpy(), dtype=np.float32)
            self._memo = self._umemo = None
        self._ann = ann_over(self._items, self.hnsw_min, ann)

    # ------------------------------------------------------------------ serving
    @property
    def item_vectors(self) -> np.ndarray:
        """(n_items, dim x ensemble) float32 learned item embeddings (also the output layer)."""
        if self._items is None:
            raise RuntimeError(f"{self.name}: item_vectors before fit()")
        return self._items

    def encode(self, histories: list[np.ndarray]) -> np.ndarray:
        """(n, dim x ensemble) float32 user states after each history (oldest first); zeros for an empty one.

        Items outside the fitted catalogue are dropped; only the last ``max_len`` count.
        """
        if self._net is None:
            raise RuntimeError(f"{self.name}: encode() before fit()")
        hs = [self._known(h) for h in histories]
        out = np.zeros((len(hs), self.dim * self.ensemble), np.float32)
        lens = np.array([h.size for h in hs], np.int64)
        rows = np.flatnonzero(lens)
        if rows.size == 0:
            return out
        seq = np.zeros((rows.size, int(lens.max())), np.int64)
        for r, i in enumerate(rows):
            seq[r, : lens[i]] = hs[i] + 1
        with torch.inference_mode():
            h = self._net(torch.from_numpy(seq))
            last = h[torch.arange(rows.size), torch.from_numpy(lens[rows] - 1)]
        out[rows] = last.numpy()
        return out

    def _known(self, history: np.ndarray) -> np.ndarray:
        h = np.asarray(history, np.int64).ravel()
        return h[(h >= 0) & (h < self.n_items)][-self.max_len :]

    def _user(self, ctx: UserContext) -> np.ndarray | None:
        """(dim,) float32 user state after the known history; ``None`` without one."""
        if self._net is None or self._items is None:
            raise RuntimeError(f"{self.name}: used before fit()")
        known = self._known(ctx.history)
        if known.size == 0:
            return None
        key = known.tobytes()  # recall and score_items ask in the same request
        memo = self._umemo
        if memo is not None and memo[0] == key:
            return memo[1]
        u = self.encode([known])[0]
        self._umemo = (key, u)
        return u

    def _logits(self, ctx: UserContext) -> np.ndarray | None:
        """(n_items,) float32 scores of every note, or ``None`` when no known history."""
        u = self._user(ctx)
        if u is None:
            return None
        assert self._items is not None
        # one request asks twice (recall, then score_items for the ranker): keep the last
        # answer; a (key, scores) tuple swaps atomically, so threads never see half of one
        key = u.tobytes()
        memo = self._memo
        if memo is not None and memo[0] == key:
            return memo[1].copy()
        scores = self._items @ u
        self._memo = (key, scores)
        return scores.copy()

    def recall(self, ctx: UserContext, k: int) -> Candidates:
        if k <= 0:
            return Candidates.empty(self.name)
        if self._ann is not None:  # a large catalogue: HNSW over the item embeddings
            u = self._user(ctx)
            if u is None:
                return Candidates.empty(self.name)
            return Candidates(self.name, *self._ann.search_excluding(u, k, excluded_items(ctx)))
        scores = self._logits(ctx)
        if scores is None:
            return Candidates.empty(self.name)
        excl = excluded_items(ctx)
        scores[excl[(excl >= 0) & (excl < scores.size)]] = -np.inf
        order = topk(scores, k)
        return Candidates(self.name, order, scores[order])

    def score_items(self, ctx: UserContext, items: np.ndarray) -> np.ndarray:
        """(n,) float32 logits of ``items`` for ``ctx``; zeros without a known history.

        Items outside the fitted catalogue get the lowest logit of the catalogue (with the
        HNSW index: the lowest of the ``items`` inside it).
        """
        items = np.asarray(items, np.int64).ravel()
        if self._ann is not None:
            u = self._user(ctx)
            if u is None:
                return np.zeros(items.size, np.float32)
            assert self._items is not None
            known = (items >= 0) & (items < self._items.shape[0])
            got = self._items[items[known]] @ u
            out = np.full(items.size, got.min() if got.size else 0.0, np.float32)
            out[known] = got
            return out
        scores = self._logits(ctx)
        if scores is None:
            return np.zeros(items.size, np.float32)
        known = (items >= 0) & (items < scores.size)
        out = np.full(items.size, scores.min(), np.float32)
        out[known] = scores[items[known]]
        return out

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> None:
        """Write ``path/model.safetensors`` and ``path/config.json``."""
        if self._net is None:
            raise RuntimeError(f"{self.name}: save() before fit()")
        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self._net.state_dict().items()}, str(p / "model.safetensors"))
        params = {k: v for k, v in asdict(self).items() if k != "n_items"}
        meta = {"kind": self.name, "n_items": self.n_items, "params": params}
        (p / "config.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, path: str | Path) -> SASRecChannel:
        """Inverse of :meth:`save`; a missing, corrupt or mismatched file raises ``ValueError``."""
        p = Path(path)
        try:
            meta = json.loads((p / "config.json").read_text())
            if meta.get("kind") != cls.name:
                raise ValueError(f"not a {cls.name} config (field 'kind')")
            ch = cls(**meta["params"])
            ch.n_items = int(meta["n_items"])
            state = load_file(str(p / "model.safetensors"))
            net = ch._new_net()
            net.load_state_dict(state)
        except Exception as e:  # json, safetensors and torch raise several types
            raise ValueError(f"{cls.name}: cannot load {p}: {e}") from e
        ch._set_net(net)
        return ch

    def to_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """For the model store (:mod:`notefeed.models.artifacts`): hyper-parameters and the
        network's ``state_dict`` as numpy arrays."""
        if self._net is None:
            raise RuntimeError(f"{self.name}: to_state() before fit()")
        params = {k: v for k, v in asdict(self).items() if k != "n_items"}
        arrays = {k: v.detach().cpu().numpy() for k, v in self._net.state_dict().items()}
        if self._ann is not None:  # stored: a load skips the HNSW build
            arrays[ANN_KEY] = self._ann.to_array()
        return {"n_items": self.n_items, "params": params}, arrays

    @classmethod
    def from_state(cls, params: dict, arrays: dict[str, np.ndarray]) -> SASRecChannel:
        ch = cls(**params["params"])
        ch.n_items = int(params["n_items"])
        net = ch._new_net()  # its tables are not drawn at random only to be replaced
        net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in arrays.items() if k != ANN_KEY},
                            assign=True)
        ch._set_net(net, arrays.get(ANN_KEY))
        return ch


def _pack(seqs: list[np.ndarray], max_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Right-padded inputs (tokens = item + 1) and next-item targets (-1 = padding).

    Returns ``(inp (n, max_len) int64, tgt (n, max_len) int64, lens (n,) int64)`` for the
    sequences of two or more items, each cut to its last ``max_len + 1``.
    """
    seqs = [s[-(max_len + 1) :] for s in seqs if s.size >= 2]
    lens = np.array([s.size - 1 for s in seqs], np.int64)
    inp = np.zeros((len(seqs), max_len), np.int64)
    tgt = np.full((len(seqs), max_len), -1, np.int64)
    for r, s in enumerate(seqs):
        inp[r, : s.size - 1] = s[:-1] + 1
        tgt[r, : s.size - 1] = s[1:]
    return inp, tgt, lens


def _batches(lens: np.ndarray, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Row batches of similar length (little padding), in random order; fresh mix every call."""
    order = np.lexsort((rng.random(lens.size), lens))
    out = [order[i : i + size] for i in range(0, lens.size, size)]
    return [out[i] for i in rng.permutation(len(out))]


#: (channel, inp, tgt, lens) for :func:`_train_forked_member`, set while a fit's workers run
#: (forked workers inherit it)
_FORK_JOB: tuple[Any, np.ndarray, np.ndarray, np.ndarray] | None = None


def _train_forked_member(task: tuple[int, int]) -> tuple[dict[str, np.ndarray], float, int, str, bool]:
    """In a forked worker: network ``j`` of :data:`_FORK_JOB`'s channel trained with ``seed``;
    its state as arrays, training seconds, epochs, loss and sparse flag. Only the first
    network shows a progress bar."""
    j, seed = task
    if _FORK_JOB is None:
        raise RuntimeError("sequence/sasrec: a forked training worker without its job")
    ch, inp, tgt, lens = _FORK_JOB
    ch.progress = bool(ch.progress) and j == 0
    net = ch._train_member(inp, tgt, lens, torch.device("cpu"), seed)
    state = {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}
    return state, ch.train_s, ch.epochs_run, ch.loss_used, ch.sparse_used


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX tiles). Where it does,
    training runs in bf16 autocast by default (``bf16: None``), elsewhere in float32: the same
    seed then gives a different network on the two kinds of machine."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def _use_bf16(dev: torch.device) -> bool:
    if dev.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    # emulated bf16 is several times slower than float32, so only where the CPU has it natively
    return native_bf16()


def _resolve_device(device: str) -> torch.device:
    if device.startswith("cuda") and not torch.cuda.is_available():
        warnings.warn(f"sequence/sasrec: device {device!r} unavailable; training on the CPU", stacklevel=3)
        return torch.device("cpu")
    return torch.device(device)
