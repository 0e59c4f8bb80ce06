"""Imports every loader module so that each registers itself in ``LOADERS`` (the simulator's
``sim-*`` datasets register from :mod:`notefeed.sim.datasets` when ``notefeed.sim`` is imported)."""

from notefeed.data import importer  # noqa: F401,E402  (registers the "csv" loader)
from notefeed.data.loaders import (  # noqa: F401
    kuairand,
    kuairec,
    lastfm_hetrec,
    microlens,
    movielens,
    qilin,
    s3rec,
    seqfile,
    taobao,
)
