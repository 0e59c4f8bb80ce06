"""Ads: advertisers, campaigns and ads (``schema``, ``store``); keyword, semantic and rewrite
ad recall with an efficiency model (``keywords``, ``recall``); eCPM ranking, generalised
second-price auction, ad slots and frequency caps (``auction``); budget pacing (``pacing``);
water-level metrics on an ad simulator (``simulate``, ``evaluate``: ``notefeed eval --stage ads``).
"""

from notefeed.ads.base import AD_CHANNELS, AdCandidates, AdRecallChannel, AdRequest, EfficiencyModel, Pacer
from notefeed.ads.schema import Ad, Advertiser, Campaign, Keyword, Targeting
from notefeed.ads.store import AdStore, AdStoreError

__all__ = [
    "AD_CHANNELS", "AdCandidates", "AdRecallChannel", "AdRequest", "EfficiencyModel", "Pacer",
    "Ad", "Advertiser", "Campaign", "Keyword", "Targeting", "AdStore", "AdStoreError",
]
