"""The simulator's logged history as named datasets: ``sim-tiny``, ``sim-demo``, ``sim-100k``.

``path`` is ignored (the data is generated, seeded and deterministic); ``seed`` may be passed.
Registered in :data:`~notefeed.data.loaders.LOADERS` when :mod:`notefeed.sim` is imported (the
data stage never imports the simulator; the simulator depends on data, not the reverse).
"""

from __future__ import annotations

from pathlib import Path

from notefeed.data.dataset import Dataset
from notefeed.data.loaders import LOADERS
from notefeed.sim.community import sim_dataset

__all__ = ["SIM_PRESETS"]

SIM_PRESETS = ("tiny", "demo", "100k")


def _make(preset: str):  # type: ignore[no-untyped-def]
    def load(path: Path | None = None, seed: int = 0) -> Dataset:
        ds = sim_dataset(path, preset_name=preset, seed=seed)
        ds.name = f"sim-{preset}"
        return ds

    load.__doc__ = f"History log of the simulator's `{preset}` community."
    return load


for _preset in SIM_PRESETS:
    LOADERS.register(f"sim-{_preset}")(_make(_preset))
