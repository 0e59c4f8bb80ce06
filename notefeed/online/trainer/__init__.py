"""The streaming online trainer of the fine ranker.

:class:`OnlineTrainer` reads new events (a DataFrame, a list of dicts / :class:`EventRecord`, or an
:class:`~notefeed.online.bus.EventBus` through :meth:`OnlineTrainer.consume`) and

1. **joins impressions with labels that arrive later.** The stream clock (watermark) is the
   largest event ``ts`` seen. An impression of (user, note) at ``t`` waits until the watermark
   reaches ``t + wait_s``; it then becomes one training sample, labelled 1 for each task
   (click/like/collect/comment/share) the same user did on the same note with
   ``t <= ts < t + wait_s`` (dwell: ``log1p`` of the first click's ``dwell_s``), 0 otherwise, so an
   impression without a label is a negative once the wait is over. A label that arrives after
   its impression's window closed is dropped and counted (``labels_late``); a label with no
   impression of the pair at all (e.g. one that arrives before its impression: labels are
   joined on arrival) is counted as ``labels_orphan``. ``follow``/``hide`` only feed the features.
2. **updates the ranker** every ``interval_s`` of stream time or once ``min_samples`` samples
   are ready: ``passes`` passes of minibatches over the new samples (plus up to
   ``replay_ratio`` x as many recent older ones, against forgetting), sparse id rows with the
   ranker's :class:`RowwiseAdam`, dense weights with Adam; optimiser state persists across updates.
   Features are the rank stage's request-time features over base log + stream, rebuilt once per update.
3. **publishes** a copy of the ranker as a new version (``on_publish(ranker, meta)``; with an
   ``install`` hook, ``install("online-N", FineRankerScorer(...), n_items, published_at)``: serving's
   :func:`notefeed.serve.rankwire.engine_installer` swaps it into a running engine's models).

Unseen ids never crash: users/notes unknown to the base dataset (new string ids, or integer
indices past the catalogue) get the next index, placeholder side info (author ``"unknown"``,
the note's own category when the caller passes ``notes``), and the embedding tables grow
(:mod:`notefeed.online.dyn_embedding`): no fixed table size, no hash collisions for ids.

Version metadata: ``version``, ``samples_seen``, ``samples``, ``last_event_ts``,
``published_at``, ``update_latency_s`` (median over the update's new samples of wall time from
the arrival of the event that made the sample ready to the publish), ``event_to_publish_s``
(from the impression's arrival: includes the label wait when the stream runs in real time) and
``stream_lag_s`` (watermark - impression ts, in stream seconds).
"""

from notefeed.online.trainer.core import OnlineTrainer
from notefeed.online.trainer.stream import OnlineTrainConfig, normalise_events

__all__ = ["OnlineTrainConfig", "OnlineTrainer", "normalise_events"]
