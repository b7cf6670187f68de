"""Manifests: a version's entries (docs/FORMAT.md).

    entry.py     Entry (a file, an empty directory, a link) and the checks of one entry
    records.py   records -> columns: canonical JSON lines or Entry objects into column buffers, validated
    columns.py   the in-memory column types (packed paths, pack locations)
    table.py     Manifest: the columns, lookups, directory listings, canonical bytes and digest
    columnar.py  the stored columnar form (`.columns`): a Manifest saved without the JSON parse
    compare.py   two manifests merged as a stream of changes (`diff`, the web view's diff page)
"""

from .entry import (
                    DIR,
                    EMPTY_DIGEST,
                    EXECUTABLE_MODE,
                    FILE,
                    FORMAT,
                    FORMAT_VERSION,
                    LINK,
                    MAX_CHUNK_SIZE,
                    MAX_LINK_TARGET,
                    MAX_SIZE,
                    MIN_CHUNK_SIZE,
                    PLAIN_FORMAT_VERSION,
                    Entry,
                    canonical_json,
                    check_chunk_size,
                    check_entry,
                    check_link_target,
                    parent_dirs,
)
from .table import DirChild, Manifest

__all__ = ["DIR", "EMPTY_DIGEST", "EXECUTABLE_MODE", "FILE", "FORMAT", "FORMAT_VERSION", "LINK", "MAX_CHUNK_SIZE",
           "MAX_LINK_TARGET", "MAX_SIZE", "MIN_CHUNK_SIZE", "PLAIN_FORMAT_VERSION", "DirChild", "Entry", "Manifest",
           "canonical_json", "check_chunk_size", "check_entry", "check_link_target", "parent_dirs"]
