"""One way for every eval stage to turn a ``--dataset`` name (and ``--path``) into a Dataset.

Names: any loader in :data:`~notefeed.data.loaders.LOADERS` (public datasets, ``csv``,
``seqfile``, the simulator's ``sim-tiny`` / ``sim-demo`` / ``sim-100k``, which take ``seed``)
and ``sim``, the simulator's community generated with ``seed`` (``demo`` preset, ``tiny``
when ``quick``). ``path`` is where the loader reads from (a file for ``seqfile``).
"""

from __future__ import annotations

from pathlib import Path

from notefeed.data.dataset import Dataset

__all__ = ["load_eval_dataset"]


def load_eval_dataset(name: str, seed: int, path: str | Path | None = None, *, quick: bool = False) -> Dataset:
    """The dataset ``name`` for an evaluation run (see the module docstring)."""
    from notefeed.data.loaders import load_dataset

    if name == "sim":
        if path is not None:
            raise ValueError("--path: the dataset 'sim' is generated, it does not read a path")
        from notefeed.sim.community import generate

        return generate("tiny" if quick else "demo", seed=seed).history()
    if name.startswith("sim-"):  # generated and seeded: a path means nothing here
        if path is not None:
            raise ValueError(f"--path: the dataset '{name}' is generated, it does not read a path")
        import notefeed.sim  # noqa: F401  (registers the sim-* loaders)

        return load_dataset(name, seed=seed)
    return load_dataset(name, path)
