"""`artifactfs://`: artifacts as an fsspec filesystem, for places without FUSE and for the Python data
tools that speak fsspec (pandas, pyarrow, Dask, universal-pathlib). Registered through the
`fsspec.specs` entry point, so `fsspec.open("artifactfs://acme/vision/cats:latest/labels.csv")` needs
no import. docs/PYTHON_API.md documents the path grammar and the storage options.

    paths.py        the path grammar (NAME:SELECTOR/PATH and NAME/SELECTOR/PATH)
    filesystem.py   ArtifactFileSystem: listings from manifests, verified reads, writes as versions
    writes.py       where writes may go, files being written, the transaction
"""

from .filesystem import ArtifactFileSystem

__all__ = ["ArtifactFileSystem"]
