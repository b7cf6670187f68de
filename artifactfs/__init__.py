"""artifactfs: versioned artifacts you mount as plain folders.

The Python API (docs/PYTHON_API.md) is re-exported here, loaded on first use so that importing a
submodule (the mount daemon, the CLI) does not pay for it.
"""

__version__ = "0.1.0"

__all__ = ["Artifact", "ArtifactEntry", "ArtifactSummary", "alias_log", "artifact", "artifacts", "finish_draft",
           "run_versions", "search", "types", "use_artifact", "versions", "watch"]


def __getattr__(name):
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'artifactfs' has no attribute {name!r}")
