"""notefeed: a self-hostable, multi-stage recommendation engine for content communities."""

from notefeed.data.dataset import DataError, Dataset

__all__ = ["Dataset", "DataError", "__version__"]
__version__ = "0.1.0"
