"""The new-note cold-start flow: seed audience -> look-alike expansion -> hand-over, boosted by a bandit.

A freshly published note has no engagement, so collaborative channels cannot recall it. The
:class:`ColdStartPool` keeps every new note with its tags/category (author or predicted) and
optional content vector, and serves it as a recall channel:

1. **seed**: users whose interest profile (decayed counts of the tags and categories of their
   positives, optionally a decayed content vector) matches the note; the audience is the
   ``seed_size`` best-matching users at publication time (a per-note score threshold).
2. **look-alike**: once the note has ``lookalike_after_clicks`` engagers, users whose profile is
   close (cosine) to the mean profile of the engagers join the audience (``lookalike_size``).
3. **hand-over**: at ``handover_impressions`` impressions the note leaves the pool to the normal
   channels: popularity and ``tag/interest`` (whose term lists take a note once its positive
   events beat a list's last note's) count its engagement at once; the collaborative channels
   (SASRec, ALS, Swing, ItemCF) know it from the next ``notefeed train``. Notes older than
   ``max_age_h`` expire.

Which eligible notes get the few boosted slots is decided by Thompson sampling on clicks per
impression (:mod:`notefeed.online.bandit`), or uniformly at random (``bandit="uniform"``, the baseline).
State is plain JSON (:meth:`ColdStartPool.to_state`). Events on items the pool has never been told
about are ignored and counted in the :class:`ObserveReport` (the pool sees the whole event stream).
Serving wraps the pool in ``notefeed/serve/coldstart.py``; the simulator's policies with boosted
slots (``popular+coldstart``, ...) are :class:`notefeed.sim.coldstart.ColdStartPolicy`.
"""

from notefeed.online.coldstart.config import STAGES, ColdStartConfig, ObserveReport
from notefeed.online.coldstart.pool import ColdStartPool

__all__ = ["ColdStartConfig", "ColdStartPool", "ObserveReport", "STAGES"]
