"""Manifest: the file list of one version, in canonical form and in a compact in-memory index.

Canonical form (what is stored and digested) is JSON Lines: a header object, then one object per
entry sorted by the UTF-8 bytes of its path, every object with sorted keys and no spaces. The digest
of a version is the xxh3-128 of these bytes. JSON Lines lets a million-entry manifest be parsed and
indexed one line at a time, so no Python object per entry outlives the parse.

In memory, a Manifest keeps columns: all paths in one bytes buffer with an offsets array, sizes in an
array, binary digests in one buffer, and a sparse dict for the rare entries with chunks or a reference.
"""

import bisect
import itertools
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ..errors import CorruptData, InvalidPath
from ..hashing import CHUNK_SIZE, digest_bytes
from ..paths import normalize_entry_path
from .columns import PackColumns, PathColumn
from .entry import DIR, FILE, FORMAT, FORMAT_VERSION, PLAIN_FORMAT_VERSION, Entry, canonical_json, check_chunk_size
from .records import ColumnsBuilder, parse_lines

_CHILD_BATCH = 256  # children per child_rows call


@dataclass
class DirChild:
    name: str
    is_dir: bool
    index: int  # entry index of the file, or the first entry under the directory
    next_index: int  # where a listing resumes after this child


class Manifest:
    """An immutable, sorted list of entries, stored column-wise."""

    def __init__(self, chunk_size: int, paths: bytes, offsets: array, sizes: array, digests: bytes,
                 executable: bytes, extras: dict[int, dict], packs: "PackColumns | None" = None):
        self.chunk_size = chunk_size
        self._paths = PathColumn(paths, offsets)
        self._sizes = sizes
        self._digests = digests
        self._executable = executable
        self._extras = extras
        self._packs = packs if packs is not None else PackColumns.none(len(sizes))
        self.total_size = sum(sizes)
        self._canonical: bytes | None = None
        self._digest: str | None = None
        self._last_range: tuple = (None, None)
        self._digest_index: dict[bytes, int] | None = None
        self.specials = 0  # entries that are empty directories or links (format 2)

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_entries(cls, entries: Iterable[Entry], chunk_size: int = CHUNK_SIZE) -> "Manifest":
        """Build from entries in any order; rejects duplicate paths and file/directory clashes."""
        ordered = sorted(entries, key=lambda e: e.path.encode("utf-8"))
        return cls._pack(ordered, chunk_size)

    @classmethod
    def _pack(cls, ordered: Iterable[Entry], chunk_size: int) -> "Manifest":
        cols = ColumnsBuilder()
        for e in ordered:
            cols.add_entry(e)
        return cols.build(cls, chunk_size)

    def _check_tree(self, suspects: Iterable[int] | None = None) -> None:
        """Reject a path that is both a file and a directory. Only an entry whose successor starts with
        its path can be one (paths sharing a prefix are contiguous), so `suspects` may list just those."""
        if suspects is None:
            suspects = (i for i in range(len(self) - 1) if self._paths[i + 1].startswith(self._paths[i]))
        for i in suspects:
            p = self._paths[i]
            j = bisect.bisect_left(self._paths, p + b"/", i + 1)
            if j < len(self) and self._paths[j].startswith(p + b"/"):
                raise InvalidPath(f"entry path {p.decode()!r} is both a file and a directory")

    @classmethod
    def parse(cls, data: bytes) -> "Manifest":
        """Parse canonical bytes; the result's digest is that of `data`."""
        header, cols = parse_lines(data)
        m = cols.build(cls, check_chunk_size(header.get("chunk_size")))
        if (m.specials > 0) != (header["format"] == FORMAT_VERSION):  # one tree, one canonical form
            raise CorruptData(f"manifest of format {header['format']} with {m.specials} directory or link entries")
        m._canonical = data if data.endswith(b"\n") or not data else None
        m._digest = digest_bytes(data)
        return m

    # ---- canonical form -----------------------------------------------------------------------
    def header(self) -> dict:
        version = FORMAT_VERSION if self.specials else PLAIN_FORMAT_VERSION  # files only: digests as before
        return {"type": FORMAT, "format": version, "chunk_size": self.chunk_size}

    def to_bytes(self) -> bytes:
        if self._canonical is None:
            parts = [canonical_json(self.header())]
            parts.extend(canonical_json(self[i].to_json()) for i in range(len(self)))
            self._canonical = b"\n".join(parts) + b"\n"
        return self._canonical

    def drop_canonical(self) -> None:
        """Forget the canonical bytes kept from parsing (80 MiB for a million entries); `to_bytes`
        regenerates the same bytes if they are needed again. For long-lived readers like the mount."""
        if self._digest is not None:
            self._canonical = None

    @property
    def digest(self) -> str:
        if self._digest is None:
            self._digest = digest_bytes(self.to_bytes())
        return self._digest

    # ---- access -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._sizes)

    def __getitem__(self, i: int) -> Entry:
        if not 0 <= i < len(self):
            raise IndexError(i)
        extra = self._extras.get(i, {})
        digest = None if extra.get("no_digest") else self._digests[16 * i:16 * i + 16].hex()
        pack, offset = self._packs.location(i)
        return Entry(self._paths[i].decode("utf-8"), self._sizes[i], digest, extra.get("chunks"),
                     extra.get("ref"), extra.get("etag"), extra.get("version_id"), bool(self._executable[i]),
                     pack, offset, extra.get("kind", FILE), extra.get("target"), extra.get("blocks"))

    def __iter__(self) -> Iterator[Entry]:
        return (self[i] for i in range(len(self)))

    def size_of(self, i: int) -> int:
        return self._sizes[i]

    def size_between(self, lo: int, hi: int) -> int:
        """The bytes of entries [lo, hi) (a directory's, with dir_range)."""
        return sum(self._sizes[lo:hi])

    def kind_of(self, i: int) -> str:
        return self._extras[i].get("kind", FILE) if self.specials and i in self._extras else FILE

    def target_of(self, i: int) -> str:
        """A link's target ("" for any other entry: a link always has one)."""
        return self._extras.get(i, {}).get("target") or ""

    def path_of(self, i: int) -> str:
        return self._paths[i].decode("utf-8")

    def is_executable(self, i: int) -> bool:
        return bool(self._executable[i])

    def pack_at(self, i: int) -> str | None:
        """The pack holding entry `i`'s bytes, None if it has a blob of its own (or none)."""
        return self._packs.location(i)[0]

    def location(self, digest: str) -> tuple[str | None, int] | None:
        """Where an entry with this content is stored: (pack, offset), (None, 0) for its own blob, or
        None if no entry has it. The index is built on first use."""
        if self._digest_index is None:
            d, extras = self._digests, self._extras  # references' bytes are not in the store: skipped
            self._digest_index = {d[16 * i:16 * i + 16]: i for i in range(len(self) - 1, -1, -1)
                                  if i not in extras or not ("ref" in extras[i] or "no_digest" in extras[i])}
        i = self._digest_index.get(bytes.fromhex(digest))
        return None if i is None else self._packs.location(i)

    def blocks_for(self, digest: str) -> str | None:
        """The block list (blocks.py) an entry with this content names, if any: a commit of unchanged
        content keeps it without a request."""
        if self.location(digest) is None:
            return None
        assert self._digest_index is not None  # built by location()
        return self._extras.get(self._digest_index[bytes.fromhex(digest)], {}).get("blocks")

    def find(self, path: str) -> int | None:
        """Index of the file at `path`, or None."""
        key = path.encode("utf-8")
        i = bisect.bisect_left(self._paths, key)
        return i if i < len(self) and self._paths[i] == key else None

    def dir_range(self, dirpath: str) -> tuple[int, int]:
        """Entry indexes [start, end) of everything under `dirpath` ('' is the root)."""
        if not dirpath:
            return 0, len(self)
        last = self._last_range  # a listing asks for the same directory once per batch
        if last[0] == dirpath:
            return last[1]
        prefix = dirpath.encode("utf-8") + b"/"
        start = bisect.bisect_left(self._paths, prefix)
        end = bisect.bisect_left(self._paths, dirpath.encode("utf-8") + b"0", start)  # '0' follows '/'
        self._last_range = (dirpath, (start, end))  # one tuple, replaced whole: safe across threads
        return start, end

    def is_dir(self, dirpath: str) -> bool:
        start, end = self.dir_range(dirpath)
        if end > start:
            return True
        i = self.find(dirpath) if self.specials and dirpath else None
        return i is not None and self.kind_of(i) == DIR

    def children(self, dirpath: str, start: int | None = None) -> Iterator[DirChild]:
        """Immediate children of `dirpath` in path order, resuming at entry index `start`.

        Work is proportional to the children returned: a subdirectory is skipped with one search.
        """
        while True:
            rows = self.child_rows(dirpath, start)
            for name, is_dir, index, next_index, _, _ in rows:
                yield DirChild(name.decode("utf-8"), is_dir, index, next_index)
            if len(rows) < _CHILD_BATCH:
                return
            start = rows[-1][3]

    def child_rows(self, dirpath: str, start: int | None = None, limit: int = 0) -> list[tuple]:
        """Up to `limit` (default _CHILD_BATCH) children as `children` gives them, as plain tuples
        (UTF-8 name, is_dir, index, next_index, size, executable), size 0 and executable 0 for a
        directory: the bulk form for directory listings. Fewer than `limit` means the listing is complete."""
        limit = limit or _CHILD_BATCH
        lo, hi = self.dir_range(dirpath)
        cut = len(dirpath.encode("utf-8")) + 1 if dirpath else 0
        depth = dirpath.count("/") + 1 if dirpath else 0  # slashes in the path of an immediate child file
        blob, offsets, sizes, executable = self._paths.blob, self._paths.offsets, self._sizes, self._executable
        prefix = dirpath.encode("utf-8") + b"/"
        i = lo if start is None else max(start, lo)
        rows: list[tuple] = []
        run = limit
        while i < hi and len(rows) < limit:
            # Try a run of files first: a window with `depth` slashes per path holds no subdirectory.
            j = min(hi, i + run, i + limit - len(rows))
            if blob.count(b"/", offsets[i], offsets[j]) == (j - i) * depth:
                if dirpath:  # the run is prefix+name, prefix+name...; the prefix (with '/') is in no name
                    names = blob[offsets[i]:offsets[j]].split(prefix)[1:]
                else:
                    names = [blob[a:b] for a, b in zip(offsets[i:j], offsets[i + 1:j + 1], strict=False)]
                rows += zip(names, itertools.repeat(False), range(i, j), range(i + 1, j + 1), sizes[i:j],
                            executable[i:j])
                i, run = j, run * 2
                continue
            run = 8
            s, e = offsets[i] + cut, offsets[i + 1]
            slash = blob.find(b"/", s, e)
            if slash < 0:
                rows.append((blob[s:e], False, i, i + 1, sizes[i], executable[i]))
                i += 1
            else:
                end = bisect.bisect_left(self._paths, blob[offsets[i]:slash] + b"0", i, hi)  # '0' follows '/'
                rows.append((blob[s:slash], True, i, end, 0, 0))
                i = end
        if self.specials:  # an empty directory's entry is a directory row (a link stays a file row: kind_of)
            rows = [(r[0], True, r[2], r[3], 0, 0) if not r[1] and self.kind_of(r[2]) == DIR else r for r in rows]
        return rows

    def files_under(self, prefix: str | None) -> Iterator[Entry]:
        """Entries whose path equals `prefix` or lies under it (all when prefix is empty)."""
        if not prefix:
            yield from self
            return
        prefix = normalize_entry_path(prefix)
        one = self.find(prefix)
        if one is not None:
            yield self[one]
        start, end = self.dir_range(prefix)
        for i in range(start, end):
            yield self[i]
