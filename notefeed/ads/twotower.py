"""``semantic/twotower``: a query tower and an ad tower trained on query-ad clicks.

Both towers read **hashed tokens** (the search analyser's tokens, ``crc32`` into ``buckets``
rows of one shared embedding table, mean-pooled). The reason is what the clicks can teach: a
query word that no ad text contains (an alias, a misspelling, a new slang word) has a zero
text-encoder vector, so a tower over those vectors alone could never learn it; with a row of
its own, the word's embedding moves towards the ads that users who typed it clicked. The ad
tower pools the ad's creative text and its bid keywords separately (two bags of the same table,
concatenated) so keywords, chosen by the advertiser, weigh as a field of their own. Each tower
is a two-layer MLP, L2-normalised: the score is a cosine.

With ``text_dim`` > 0 (what the evaluation and ``notefeed ads train-towers`` use) each tower is
also **residual on the text encoder**: it reads its side's encoder vector too and outputs
``normalize(text vector + MLP(tokens, text vector))``, the last layer initialised to zero, so
training starts exactly at ``semantic/text`` and the clicks only correct it (tokens alone lose
what the encoder learned from the ad texts; on the ad simulator they recall less than it).

Training is in-batch softmax over (query, clicked ad) pairs with a temperature and the logQ
correction (the log of the ad's share of the training clicks is subtracted from its logit, so
the popular ads that are the most frequent in-batch negatives are not pushed down for being
popular); the same ad twice in a batch is not its own negative. The epoch kept is the best by
recall@``valid_k`` of the clicked ad on held-out clicks (epoch 0, the starting point, counts).
Ads are indexed in FAISS HNSW (:class:`~notefeed.recall.ann.AnnIndex`). Weights are
``model.safetensors`` plus ``config.json`` (no pickle); a workspace's towers also keep their
text encoder (``encoder/``, safetensors + JSON).
"""
from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from notefeed.ads.base import AD_CHANNELS, AdCandidates, AdRequest, QueryMemo
from notefeed.recall.ann import AnnIndex
from notefeed.recall.two_tower import in_batch_softmax_loss, log_q
from notefeed.search.text import analyze

__all__ = ["AdTowerConfig", "AdTwoTower", "TwoTowerAdChannel", "hash_bags", "train_ad_towers", "save_ad_towers",
           "load_ad_towers", "ad_tower_text", "train_workspace_towers", "load_workspace_towers", "workspace_channel", "CLICK_LOG",
           "TOWER_DIR"]

#: under ``<workspace>/ads/``: the search-ad click log serving appends to, and the trained towers
CLICK_LOG, TOWER_DIR = "clicks.jsonl", "twotower"


@dataclass
class AdTowerConfig:
    buckets: int = 1 << 15
    dim: int = 32
    hidden: int = 64
    out: int = 32
    temperature: float = 0.07
    epochs: int = 8
    batch: int = 256
    lr: float = 5e-3
    weight_decay: float = 1e-6
    logq: bool = True
    seed: int = 0
    text_dim: int = 0  # > 0: each tower also reads the text encoder's vector (frozen) of its side
    valid_share: float = 0.1  # clicks held out to pick the epoch (recall@valid_k of the clicked ad)
    valid_k: int = 50  # at most n_ads / 20 (with few ads, recall@50 says nothing)


def _tok_ids(text: str, buckets: int) -> list[int]:
    # row 0 is never used by a token: an empty bag stays distinguishable in the data
    return [1 + zlib.crc32(t.encode("utf-8")) % (buckets - 1) for t in analyze(text)]


def hash_bags(texts: list[str], buckets: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(flat token rows, offsets) for ``nn.EmbeddingBag``; an empty text is an empty bag."""
    flat: list[int] = []
    offsets: list[int] = []
    for t in texts:
        offsets.append(len(flat))
        flat.extend(_tok_ids(t, buckets))
    return torch.tensor(flat, dtype=torch.long), torch.tensor(offsets, dtype=torch.long)


class AdTwoTower(nn.Module):
    def __init__(self, cfg: AdTowerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.emb = nn.EmbeddingBag(cfg.buckets, cfg.dim, mode="mean")
        nn.init.normal_(self.emb.weight, std=0.1)
        d = cfg.text_dim
        out = d if d else cfg.out  # with text vectors the towers output a correction in their space
        self.query_mlp = nn.Sequential(nn.Linear(cfg.dim + d, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, out))
        self.ad_mlp = nn.Sequential(nn.Linear(2 * cfg.dim + d, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, out))
        if d:  # residual on the text encoder: training starts from semantic/text exactly
            for m in (self.query_mlp[-1], self.ad_mlp[-1]):
                nn.init.zeros_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def out_dim(self) -> int:
        return self.cfg.text_dim or self.cfg.out

    def _dense(self, x: torch.Tensor, dense: torch.Tensor | None) -> torch.Tensor:
        if not self.cfg.text_dim:
            return x
        if dense is None or dense.shape != (x.shape[0], self.cfg.text_dim):
            raise ValueError(f"ad towers: need text vectors ({x.shape[0]}, {self.cfg.text_dim})")
        return torch.cat([x, dense], dim=-1)

    def _out(self, mlp: nn.Module, x: torch.Tensor, dense: torch.Tensor | None) -> torch.Tensor:
        y = mlp(self._dense(x, dense))
        return F.normalize(y + dense if self.cfg.text_dim else y, dim=-1)

    def query_vec(self, flat: torch.Tensor, offsets: torch.Tensor, dense: torch.Tensor | None = None) -> torch.Tensor:
        return self._out(self.query_mlp, self.emb(flat, offsets), dense)

    def ad_vec(self, text_bags: tuple[torch.Tensor, torch.Tensor], kw_bags: tuple[torch.Tensor, torch.Tensor],
               dense: torch.Tensor | None = None) -> torch.Tensor:
        return self._out(self.ad_mlp, torch.cat([self.emb(*text_bags), self.emb(*kw_bags)], dim=-1), dense)

    # numpy in, numpy out (serving and evaluation)
    @torch.no_grad()
    def encode_queries(self, texts: list[str], text_vecs: np.ndarray | None = None) -> np.ndarray:
        dense = None if text_vecs is None else torch.as_tensor(np.asarray(text_vecs, np.float32))
        return self.query_vec(*hash_bags(texts, self.cfg.buckets), dense).numpy().astype(np.float32)

    @torch.no_grad()
    def encode_ads(self, texts: list[str], keywords: list[str], text_vecs: np.ndarray | None = None,
                   chunk: int = 4096) -> np.ndarray:
        out = []
        for s in range(0, len(texts), chunk):
            dense = None if text_vecs is None else torch.as_tensor(np.asarray(text_vecs[s:s + chunk], np.float32))
            out.append(self.ad_vec(hash_bags(texts[s:s + chunk], self.cfg.buckets),
                                   hash_bags(keywords[s:s + chunk], self.cfg.buckets), dense).numpy())
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.out_dim), np.float32)


def _select(bags: tuple[torch.Tensor, torch.Tensor], rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The bags of ``rows`` out of a precomputed (flat, offsets) of all texts."""
    flat, off = bags
    ends = torch.cat([off[1:], torch.tensor([len(flat)])])
    parts = [flat[off[r]:ends[r]] for r in rows.tolist()]
    lens = torch.tensor([len(p) for p in parts], dtype=torch.long)
    new_off = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(lens, 0)[:-1]])
    return (torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)), new_off


def train_ad_towers(queries: list[str], ads: np.ndarray, ad_texts: list[str], ad_keywords: list[str],
                    cfg: AdTowerConfig | None = None, query_vecs: np.ndarray | None = None,
                    ad_vecs: np.ndarray | None = None) -> AdTwoTower:
    """Train on clicks: ``queries[i]`` (text) clicked ad ``ads[i]`` (a row of ``ad_texts`` /
    ``ad_keywords``, the ad's keywords joined by spaces). In-batch softmax with logQ correction.
    With ``cfg.text_dim``: ``query_vecs`` (n, text_dim) and ``ad_vecs`` (n_ads, text_dim) are
    the text encoder's vectors of the queries and ads."""
    cfg = cfg or AdTowerConfig()
    if cfg.text_dim and (query_vecs is None or ad_vecs is None):
        raise ValueError("train_ad_towers: text_dim > 0 needs query_vecs and ad_vecs")
    qd = None if not cfg.text_dim else torch.as_tensor(np.asarray(query_vecs, np.float32))
    ad_d = None if not cfg.text_dim else torch.as_tensor(np.asarray(ad_vecs, np.float32))
    ads = np.asarray(ads, np.int64)
    if len(queries) != len(ads):
        raise ValueError("train_ad_towers: one clicked ad per query")
    if len(ads) < 2:
        raise ValueError("train_ad_towers: needs at least 2 clicks")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = AdTwoTower(cfg)
    q_bags = hash_bags(queries, cfg.buckets)
    t_bags, k_bags = hash_bags(ad_texts, cfg.buckets), hash_bags(ad_keywords, cfg.buckets)
    order = rng.permutation(len(ads))
    n_valid = int(len(ads) * cfg.valid_share) if len(ads) >= 20 else 0
    valid, train = order[:n_valid], order[n_valid:]
    logq = log_q(ads[train], len(ad_texts))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    @torch.no_grad()
    def valid_recall() -> float:
        model.eval()
        av = model.ad_vec(t_bags, k_bags, ad_d)
        hits = 0
        for s0 in range(0, len(valid), 256):  # (256, n_ads) scores at a time
            v = valid[s0:s0 + 256]
            qv = model.query_vec(*_select(q_bags, v), None if qd is None else qd[v])
            sc = qv @ av.T
            target = sc[torch.arange(len(v)), torch.as_tensor(ads[v])]
            rank = (sc > target.unsqueeze(1)).sum(1)
            hits += int((rank < min(cfg.valid_k, max(1, len(ad_texts) // 20))).sum())
        model.train()
        return hits / len(valid)

    best = valid_recall() if n_valid else -1.0
    best_state = {k: v.clone() for k, v in model.state_dict().items()}
    model.epochs_run = 0  # type: ignore[assignment]
    model.train()
    for epoch in range(cfg.epochs):
        perm = rng.permutation(train)
        for s in range(0, len(perm), cfg.batch):
            b = perm[s:s + cfg.batch]
            if len(b) < 2:
                continue
            ba = ads[b]
            qv = model.query_vec(*_select(q_bags, b), None if qd is None else qd[b])
            av = model.ad_vec(_select(t_bags, ba), _select(k_bags, ba), None if ad_d is None else ad_d[ba])
            loss = in_batch_softmax_loss(qv, av, torch.as_tensor(ba), cfg.temperature, logq if cfg.logq else None)
            opt.zero_grad()
            loss.backward()
            opt.step()
        r = valid_recall() if n_valid else float(epoch)
        if r > best:
            best, best_state = r, {k: v.clone() for k, v in model.state_dict().items()}
            model.epochs_run = epoch + 1  # type: ignore[assignment]
    model.load_state_dict(best_state)
    model.valid_recall = best  # type: ignore[assignment]
    return model.eval()


def save_ad_towers(model: AdTwoTower, path: str | Path) -> None:
    """``path/model.safetensors`` and ``path/config.json``."""
    from safetensors.torch import save_file

    p = Path(path)
    p.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(p / "model.safetensors"))
    (p / "config.json").write_text(json.dumps({"kind": "ads-two-tower", **asdict(model.cfg)}, indent=2))


def load_ad_towers(path: str | Path) -> AdTwoTower:
    """Inverse of :func:`save_ad_towers`; a missing, corrupt or mismatched file raises ``ValueError``."""
    from safetensors.torch import load_file

    p = Path(path)
    try:
        raw = json.loads((p / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"ad towers: cannot read {p / 'config.json'}: {e}") from e
    if not isinstance(raw, dict) or raw.pop("kind", None) != "ads-two-tower":
        raise ValueError(f"ad towers: {p / 'config.json'} is not an ads two-tower config (field 'kind')")
    try:
        cfg = AdTowerConfig(**raw)
    except TypeError as e:
        raise ValueError(f"ad towers: bad config {p / 'config.json'}: {e}") from e
    try:
        state = load_file(str(p / "model.safetensors"))
    except Exception as e:  # safetensors raises several types on a corrupt file
        raise ValueError(f"ad towers: cannot read {p / 'model.safetensors'}: {e}") from e
    model = AdTwoTower(cfg)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"ad towers: weights do not match the config in {p}: {e}") from e
    return model.eval()


@AD_CHANNELS.register("semantic/twotower")
class TwoTowerAdChannel:
    """Search ads by the query tower against the ad tower's vectors in FAISS HNSW; cosine >=
    ``min_score``. Feed ads (no query) get nothing from this channel: the towers were trained
    on queries, and a user's history is not a query."""

    name = "semantic/twotower"

    def __init__(self, model: AdTwoTower, ad_texts: list[str], ad_keywords: list[str], kind: str = "hnsw",
                 min_score: float = 0.0, text_encode: Callable[[list[str]], np.ndarray] | None = None,
                 ad_text_vecs: np.ndarray | None = None) -> None:
        if model.cfg.text_dim and (text_encode is None or ad_text_vecs is None):
            raise ValueError("TwoTowerAdChannel: these towers read text vectors: give text_encode and ad_text_vecs")
        self.model, self.text_encode = model, text_encode
        self.ad_vecs = model.encode_ads(ad_texts, ad_keywords, ad_text_vecs if model.cfg.text_dim else None)
        self.index = AnnIndex(model.out_dim, kind=kind, expected=len(ad_texts))
        self.index.add(self.ad_vecs, np.arange(len(ad_texts), dtype=np.int64))
        self.min_score = min_score
        self._cache: QueryMemo[np.ndarray] = QueryMemo()

    def query_vec(self, query: str) -> np.ndarray:
        def vec() -> np.ndarray:
            tv = self.text_encode([query]) if self.model.cfg.text_dim and self.text_encode else None
            return self.model.encode_queries([query], tv)[0]

        return self._cache.get(query, vec)

    def scores(self, query: str, ids: np.ndarray) -> np.ndarray:
        """Cosine of the query to ads ``ids`` (for the relevance of candidates)."""
        return self.ad_vecs[ids] @ self.query_vec(query)

    def retrieve(self, request: AdRequest, k: int) -> AdCandidates:
        if not request.query:
            return AdCandidates.empty()
        v = self.query_vec(request.query)
        sc, ids = self.index.search(v[None, :], k)
        keep = (ids[0] >= 0) & (sc[0] >= self.min_score)
        return AdCandidates(ids[0][keep].astype(np.int64), sc[0][keep].astype(np.float32),
                            [self.name] * int(keep.sum()))


# -- a workspace's towers: trained on the search-ad clicks serving logged ---------------------------
def ad_tower_text(ad: object) -> tuple[str, str]:
    """(creative text, keywords) the ad tower reads for a stored :class:`~notefeed.ads.schema.Ad`:
    title, text and category; its bid keywords joined. Training and serving both use this."""
    text = " ".join(p for p in (getattr(ad, "title", None), getattr(ad, "text", None),
                                getattr(ad, "category", None)) if p)
    return text, " ".join(k.text for k in getattr(ad, "keywords", []))


def _read_clicks(path: Path) -> list[tuple[str, str]]:
    """(query, ad id) per logged click; a torn or malformed line is skipped."""
    out = []
    if not path.exists():
        return out
    with path.open(encoding="utf-8") as f:
        for line in f:
            try:
                d = json.loads(line)
                q, a = d["query"], d["ad_id"]
            except (ValueError, KeyError, TypeError):
                continue
            if isinstance(q, str) and isinstance(a, str) and q.strip():
                out.append((q, a))
    return out


def train_workspace_towers(workspace: str | Path, min_clicks: int = 200, cfg: AdTowerConfig | None = None,
                           text_dim: int = 64) -> dict:
    """Train the towers on ``<workspace>/ads/clicks.jsonl`` (clicks on search ads, with their
    query, logged by serving) against the ads in the store, residual on a text encoder fitted
    here on the ad texts and the clicked queries; write ``<workspace>/ads/twotower/`` (towers
    and encoder, safetensors + JSON). Serving picks it up on its next index build. Clicks on
    ads no longer in the store are dropped. Raises ``ValueError`` under ``min_clicks``."""
    from notefeed.ads.store import AdStore
    from notefeed.content.text import TextEncoder

    ws = Path(workspace) / "ads"
    store = AdStore(ws / "ads.json")
    _, _, ads, _ = store.snapshot()
    ids = list(ads)
    row = {a: i for i, a in enumerate(ids)}
    pairs = [(q, row[a]) for q, a in _read_clicks(ws / CLICK_LOG) if a in row]
    if len(pairs) < max(2, min_clicks):
        raise ValueError(f"ad towers: {len(pairs)} usable clicks in {ws / CLICK_LOG}, need {max(2, min_clicks)}")
    texts, kws = zip(*(ad_tower_text(ads[a]) for a in ids), strict=True)
    queries = [q for q, _ in pairs]
    enc = TextEncoder(dim=text_dim).fit([f"{t} {k}".strip() or "-" for t, k in zip(texts, kws, strict=True)]
                                        + queries)
    cfg = cfg or AdTowerConfig(epochs=15)
    cfg.text_dim = enc.dim
    model = train_ad_towers(queries, np.array([a for _, a in pairs]), list(texts), list(kws), cfg,
                            enc.transform(queries), _ad_text_vecs(enc, list(texts), list(kws)))
    out = ws / TOWER_DIR
    tmp = ws / f".{TOWER_DIR}.tmp"
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    save_ad_towers(model, tmp)
    enc.save(tmp / "encoder")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return {"clicks": len(pairs), "ads": len(ids), "epochs_run": int(model.epochs_run),
            "valid_recall": float(model.valid_recall), "path": str(out)}


def _ad_text_vecs(enc: object, texts: list[str], kws: list[str]) -> np.ndarray:
    """The encoder's vectors of the ads (creative text and keywords together)."""
    return enc.transform([f"{t} {k}".strip() for t, k in zip(texts, kws, strict=True)])  # type: ignore[attr-defined]


def workspace_channel(towers: tuple[AdTwoTower, object], ads: list[object], kind: str = "auto",
                      min_score: float = 0.0, text_encode: Callable[[list[str]], np.ndarray] | None = None
                      ) -> TwoTowerAdChannel:
    """The ``semantic/twotower`` channel over ``ads`` (stored Ad models, row order = ad rows);
    ``text_encode``: the towers' encoder's ``transform`` or a faster equal one for queries."""
    model, enc = towers
    pairs = [ad_tower_text(a) for a in ads]
    texts, kws = [t for t, _ in pairs], [k for _, k in pairs]
    if model.cfg.text_dim:
        return TwoTowerAdChannel(model, texts, kws, kind=kind, min_score=min_score,
                                 text_encode=text_encode or enc.transform,  # type: ignore[attr-defined]
                                 ad_text_vecs=_ad_text_vecs(enc, texts, kws))
    return TwoTowerAdChannel(model, texts, kws, kind=kind, min_score=min_score)


def load_workspace_towers(workspace: str | Path) -> tuple[AdTwoTower, object] | None:
    """(towers, text encoder) from ``<workspace>/ads/twotower/``, or None when there are none;
    a corrupt bundle raises ``ValueError``."""
    from notefeed.content.text import TextEncoder

    p = Path(workspace) / "ads" / TOWER_DIR
    if not (p / "config.json").exists():
        return None
    model = load_ad_towers(p)
    try:
        enc = TextEncoder.load(p / "encoder") if model.cfg.text_dim else None
    except Exception as e:  # the encoder's own errors: one type for the caller
        raise ValueError(f"ad towers: cannot read the encoder in {p}: {e}") from e
    if enc is not None and enc.dim != model.cfg.text_dim:
        raise ValueError(f"ad towers: the encoder in {p} gives {enc.dim}-d vectors, the towers read {model.cfg.text_dim}")
    return model, enc
