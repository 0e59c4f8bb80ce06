"""Training the built-in model: one encoder, three objectives on each step.

1. **Contrastive** (NoteLLM's generative-contrastive learning, its contrastive half): a batch of
   co-occurrence pairs ``(a, b)``; each ``a``'s positive is its ``b``, the other ``b`` of the
   batch are negatives (in-batch negatives, symmetric cross-entropy), scaled by a learned
   temperature. Without pairs the positive is the same note read again with other dropout and
   tag dropout (SimCSE), so a corpus with no behaviour still trains an embedding.
2. **Tags and category** from the ``[EMB]`` state (multi-label tags, single-label category):
   NoteLLM's hashtag/category generation as classification. Notes are read without their tags
   with probability ``tag_drop``, so the head must infer them from title and body.
3. **Causal LM** on ``body [TITLE] title [TAGS] tags`` with the same weights, for ``generate``.
"""

from __future__ import annotations

import math
import time
from collections import Counter

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from notefeed.llm.base import LLMError
from notefeed.llm.builtin import BuiltinConfig, BuiltinLM, resolve_device
from notefeed.llm.corpus import NoteCorpus
from notefeed.llm.net import NoteLMNet
from notefeed.llm.tokenizer import Tokenizer

__all__ = ["train_builtin", "contrastive_loss", "lr_factor", "lm_backward"]


def contrastive_loss(za: torch.Tensor, zb: torch.Tensor, scale: torch.Tensor, ia: torch.Tensor,
                     ib: torch.Tensor) -> torch.Tensor:
    """Symmetric in-batch InfoNCE. za, zb (b, d) unit rows; ia, ib (b,) note ids: an off-diagonal
    candidate that is the same note as the positive is masked (not a negative)."""
    logits = za @ zb.T * scale
    same = (ib[None, :] == ib[:, None]) | (ia[None, :] == ia[:, None])
    eye = torch.eye(len(za), dtype=torch.bool, device=za.device)
    logits = logits.masked_fill(same & ~eye, -1e4)
    y = torch.arange(len(za), device=za.device)
    return 0.5 * (F.cross_entropy(logits, y) + F.cross_entropy(logits.T, y))


def lr_factor(frac: float, warmup: float = 0.1, floor: float = 0.05) -> float:
    """Learning-rate multiplier at ``frac`` (0..1) of the training budget: linear warm-up over the
    first ``warmup``, then a cosine down to ``floor``. The budget is the planned steps or the time
    cap, whichever runs out first, so a capped run still ends annealed, not cut at its peak rate."""
    if frac < warmup:
        return max(frac / warmup, 0.01)
    x = min(1.0, (frac - warmup) / max(1e-9, 1.0 - warmup))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * x))


def lm_backward(net: NoteLMNet, ids: torch.Tensor, weight: float, chunk: int = 1024) -> float:
    """Accumulate the gradient of ``weight`` x the causal LM's mean next-token cross-entropy on
    ``ids`` (b, t) (0 = padding, no loss) into ``net``; return that mean cross-entropy.

    The output layer (states x the tied vocabulary) runs ``chunk`` positions at a time, each
    chunk's logits freed after its backward, so no (positions x vocabulary) tensor is ever whole:
    on a VM, allocating such a tensor afresh each step (tens of MB) cost more page faults than
    arithmetic. The gradient is that of the whole-batch loss (the chunks' sums over the count).
    """
    h, tgt = net.lm_states(ids[:, :-1]), ids[:, 1:]
    keep = tgt != 0
    hk, tk = h[keep], tgt[keep]
    n = len(tk)
    if n == 0:
        return 0.0
    hd = hk.detach().requires_grad_()
    total = 0.0
    for lo in range(0, n, chunk):
        part = F.cross_entropy(hd[lo : lo + chunk] @ net.tok.weight.T, tk[lo : lo + chunk], reduction="sum")
        (part * (weight / n)).backward()
        total += float(part.detach())
    hk.backward(hd.grad)
    return total / n


def _pad(rows: list[list[int]], width: int) -> np.ndarray:
    out = np.zeros((len(rows), width), np.int64)
    for i, r in enumerate(rows):
        out[i, : min(len(r), width)] = r[:width]
    return out


def _trim(x: np.ndarray) -> torch.Tensor:
    t = max(1, int((x != 0).sum(axis=1).max()))
    return torch.from_numpy(x[:, :t])


def train_builtin(corpus: NoteCorpus, pairs: np.ndarray | None = None, config: BuiltinConfig | None = None,
                  progress: bool = False, extra_texts: list[str] | None = None) -> BuiltinLM:
    """Tokenizer from the notes (and ``extra_texts``), then the model (see the module docstring).

    ``pairs`` (m, 2) int64 rows of ``corpus`` engaged together (NoteLLM co-occurrence pairs).
    """
    c = config or BuiltinConfig()
    n = len(corpus)
    if n == 0:
        raise LLMError("corpus: no notes to train on")
    if pairs is not None:
        pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
        if len(pairs) and (pairs.min() < 0 or pairs.max() >= n):
            raise LLMError(f"pairs: note index out of range [0, {n})")
    t_start, t_cpu0 = time.perf_counter(), time.process_time()
    full, bare = corpus.texts(True), corpus.texts(False)
    tok = Tokenizer.build(full + [x for x in corpus.bodies] + list(extra_texts or ()), c.max_words, c.min_count)
    tag_count = Counter(t for ts in corpus.tags for t in set(ts))
    tags = [t for t, k in sorted(tag_count.items(), key=lambda x: (-x[1], x[0])) if k >= 2][: c.max_tags]
    cats = sorted({x for x in corpus.categories if x})
    tag_ix, cat_ix = {t: i for i, t in enumerate(tags)}, {x: i for i, x in enumerate(cats)}
    L = c.max_len
    ids_full = _pad([[tok.emb] + tok.encode(t) for t in full], L)
    ids_bare = _pad([[tok.emb] + tok.encode(t) for t in bare], L)
    # the LM text keeps its end (title and tags) when the body is long
    lm_rows = []
    for t, b, g in zip(corpus.titles, corpus.bodies, corpus.tags, strict=True):
        tail = tok.encode(f"[TITLE] {t} [TAGS] {' '.join(g)}")[: L - 8] + [tok.eos]
        lm_rows.append([tok.bos] + tok.encode(b)[: L - 1 - len(tail)] + tail)
    ids_lm = _pad(lm_rows, L)
    y_tag = np.zeros((n, max(1, len(tags))), np.float32)
    for i, ts in enumerate(corpus.tags):
        for t in ts:
            if t in tag_ix:
                y_tag[i, tag_ix[t]] = 1.0
    y_cat = np.array([cat_ix.get(x, -100) for x in corpus.categories], np.int64)

    dev = resolve_device(c.device)
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, min(c.threads, threads)))
    rng = np.random.default_rng(c.seed)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.seed)
            net = BuiltinLM.new_net(c, tok, tags, cats).to(dev)
            opt = torch.optim.AdamW(net.parameters(), lr=c.lr, weight_decay=0.01)
            src = pairs if pairs is not None and len(pairs) else np.stack([np.arange(n)] * 2, axis=1)
            steps = max(1, -(-len(src) // c.batch_size))
            total = c.epochs * steps
            # the cap counts this process's CPU seconds on the CPU (so a busy shared machine does not
            # shorten training), wall seconds on a GPU
            clock = time.perf_counter if dev.type == "cuda" else time.process_time
            t_loop = clock()
            budget = None if c.max_time_s is None else max(1e-3, c.max_time_s - (t_loop - (t_start if dev.type == "cuda" else t_cpu0)))
            bar = tqdm(total=total, desc="llm/builtin", unit="step", disable=not progress, leave=False)
            net.train()
            losses: list[float] = []
            done, capped = 0, False
            for _ in range(c.epochs):
                perm = rng.permutation(len(src))
                for s in range(steps):
                    frac = done / total
                    if budget is not None:  # the schedule runs to whichever ends first: steps or time
                        frac_t = (clock() - t_loop) / budget
                        if frac_t >= 1.0 and done > 0:  # at least one step
                            capped = True
                            break
                        frac = max(frac, frac_t)
                    for g in opt.param_groups:
                        g["lr"] = c.lr * lr_factor(frac)
                    b = src[perm[s * c.batch_size : (s + 1) * c.batch_size]]
                    ia, ib = b[:, 0], b[:, 1]
                    drop_a = rng.random(len(b)) < c.tag_drop
                    drop_b = rng.random(len(b)) < c.tag_drop
                    xa = np.where(drop_a[:, None], ids_bare[ia], ids_full[ia])
                    xb = np.where(drop_b[:, None], ids_bare[ib], ids_full[ib])
                    pa = net.pooled(_trim(xa).to(dev))
                    za, zb = F.normalize(pa, dim=-1), net.embed(_trim(xb).to(dev))
                    scale = net.logit_scale.clamp(max=4.6052).exp()
                    loss = contrastive_loss(za, zb, scale, torch.from_numpy(ia).to(dev), torch.from_numpy(ib).to(dev))
                    if c.tag_weight > 0 and tags:
                        lt = F.binary_cross_entropy_with_logits(net.tag_head(za), torch.from_numpy(y_tag[ia]).to(dev))
                        lc = F.cross_entropy(net.cat_head(za), torch.from_numpy(y_cat[ia]).to(dev)) \
                            if cats and (y_cat[ia] >= 0).any() else torch.zeros((), device=dev)
                        loss = loss + c.tag_weight * (lt * 10.0 + lc)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    step_loss = float(loss.detach())
                    if c.lm_weight > 0 and done % c.lm_every == 0:
                        step_loss += c.lm_weight * lm_backward(net, _trim(ids_lm[ia]).to(dev), c.lm_weight)
                    torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                    opt.step()
                    done += 1
                    losses.append(step_loss)
                    bar.update(1)
                    if done % 20 == 0:
                        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", refresh=False)
                if capped:
                    break
            bar.close()
    finally:
        torch.set_num_threads(threads)
    secs = time.perf_counter() - t_start
    tokens = int((ids_full != 0).sum() + (ids_lm != 0).sum()) * done / max(1, steps) / 2
    info = {"notes": n, "pairs": 0 if pairs is None else int(len(pairs)), "steps": done, "capped": capped,
            "epochs_done": round(done / steps, 2), "planned_steps": total,
            "train_s": round(secs, 1), "train_cpu_s": round(time.process_time() - t_cpu0, 1),
            "final_loss": round(float(np.mean(losses[-20:])), 4) if losses else None,
            "tokens_per_s": round(tokens / max(secs, 1e-9)), "device": str(dev),
            "temperature": round(float(1.0 / net.logit_scale.detach().clamp(max=4.6052).exp()), 4)}
    return BuiltinLM(c, tok, tags, cats, net.cpu().eval(), info)


