"""notefeed: a self-hostable, multi-stage recommendation engine for content communities."""

from notefeed._lazy import lazy_exports

__all__ = ["Dataset", "DataError", "__version__"]

__version__ = "0.1.0"

# ``from notefeed import Dataset`` imports the data layer (pandas, pyarrow) at that point, not
# when any notefeed module is imported (``notefeed --help`` does not need it)
__getattr__, __dir__ = lazy_exports(__name__, {"Dataset": "notefeed.data.dataset",
                                               "DataError": "notefeed.data.dataset"})
