"""notefeed.models: trained versions of the pipeline's components, stored and promoted.

``ModelStore(workspace)`` keeps versions under ``WORKSPACE/models/<version>/`` (a manifest and
one ``component.json`` + ``arrays.safetensors`` folder per component); ``serve`` loads the
promoted one. :mod:`notefeed.models.artifacts` is the one persistence format (no pickle).
"""

from notefeed.models.artifacts import ModelError, has_state, load_component, save_component
from notefeed.models.store import ModelStore, VersionInfo, code_version, config_hash, data_snapshot

__all__ = [
    "ModelError",
    "ModelStore",
    "VersionInfo",
    "code_version",
    "config_hash",
    "data_snapshot",
    "has_state",
    "load_component",
    "save_component",
]
