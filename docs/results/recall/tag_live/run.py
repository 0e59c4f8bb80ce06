"""``tag/interest`` taking published and edited notes, against the same channel without it (its
fitted tables only, as before), in the simulator's closed loop, side by side in one process.

``python3 docs/results/recall/tag_live/run.py`` registers ``tag/static-after-fit`` (the channel
without ``add_items`` / ``replace_items`` / ``n_indexed``, so a serving engine gives it no new
note) and runs ``notefeed sim run`` with the default config and ``static.yaml`` (the default
config with that channel in place of ``tag/interest``), writing ``sim_demo.json`` here.
"""
import sys
from pathlib import Path

from notefeed.cli import app
from notefeed.recall.base import CHANNELS
from notefeed.recall.tag import TagInterestChannel


@CHANNELS.register("tag/static-after-fit")
class StaticTagInterest(TagInterestChannel):
    name = "tag/static-after-fit"
    add_items = None  # type: ignore[assignment]
    replace_items = None  # type: ignore[assignment]
    n_indexed = None  # type: ignore[assignment]


here = Path(__file__).parent
sys.argv = ["notefeed", "sim", "run", "--preset", "demo", "--config",
            f"configs/default.yaml,{here / 'static.yaml'}", "--seeds", "0,1,2,3,4", "--steps", "20",
            "--requests", "50", "--new-notes", "10", "--json", str(here / "sim_demo.json")]
app()
