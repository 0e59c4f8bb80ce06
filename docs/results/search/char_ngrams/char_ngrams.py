"""The search eval with the dense text encoder's character n-grams changed (session 38): is a
cheaper encoder (fewer features per word: the dense half of the 1M index build) as good?

``python3 docs/results/search/char_ngrams/char_ngrams.py LO,HI eval --stage search --dataset
sim-demo,movielens-small --seed 0 --json docs/results/search/char_ngrams/charLOHI.json`` runs
``notefeed eval`` with ``TextEncoderConfig(char_ngram_min=LO, char_ngram_max=HI)`` for the
search index's encoder (3,4 is the default; 50,50 leaves only the single characters of Chinese
words, i.e. no character n-grams of other words).
"""
import functools
import sys

import notefeed.search.dense as D

lo, hi = map(int, sys.argv[1].split(","))
D.TextEncoderConfig = functools.partial(D.TextEncoderConfig, char_ngram_min=lo, char_ngram_max=hi)

from notefeed.cli import app  # noqa: E402

sys.argv = ["notefeed"] + sys.argv[2:]
app()
