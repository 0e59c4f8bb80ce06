"""The operator console: ``/console`` (a static single-page app in ``static/``, our own
charting code included, no CDN) over small JSON endpoints under ``/v1/admin/console/``."""

from notefeed.serve.console.routes import PAGES, add_console_routes
from notefeed.serve.console.tracker import ExposureTracker, gini, quantile_from_buckets

__all__ = ["add_console_routes", "PAGES", "ExposureTracker", "gini", "quantile_from_buckets"]
