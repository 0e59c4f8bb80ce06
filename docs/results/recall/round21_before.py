"""The recall code of before session 21's exact speed-ups, for side-by-side runs
(``stage_1m_ab.py`` here, ``docs/results/serve/steps_1m_tag_ab.py``): :func:`use` swaps it in
or out. Before: ``tag/interest`` multiplied over the whole note x term table, ``user-to-user``
fully sorted its co-users, ``weighted_row_sum`` always sorted the selected entries."""
import numpy as np
import scipy.sparse as sp

from notefeed.recall import _common, user2user
from notefeed.recall._common import recency_weights
from notefeed.recall.tag import TagInterestChannel

NOW = (TagInterestChannel.interests, user2user.stable_topk, _common.DENSE_SUM_RATIO)


def old_tags(self, history):
    h = np.asarray(history, np.int64)[-self.n_recent:]
    h = h[(h >= 0) & (h < self.terms.shape[0])]
    if h.size == 0:
        return np.empty(0, np.int64), np.empty(0)
    w = sp.csr_matrix((recency_weights(h.size, self.decay), (np.zeros(h.size, np.int64), h)),
                      shape=(1, self.terms.shape[0]))
    t = (w @ self.terms).tocsr()
    order = np.argsort(-t.data, kind="stable")[: self.n_interests]
    return t.indices[order].astype(np.int64), t.data[order] / max(t.data.sum(), 1e-12)


def old_top(s, k):
    return np.argsort(-s, kind="stable")[:k]


def use(before: bool) -> None:
    """The code of before (True) or now (False); 0 makes every ``weighted_row_sum`` sort."""
    TagInterestChannel.interests, user2user.stable_topk, _common.DENSE_SUM_RATIO = (
        (old_tags, old_top, 0) if before else NOW)
