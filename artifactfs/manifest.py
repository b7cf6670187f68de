"""Manifests: the file list of one version, in canonical form and in a compact in-memory index.

Canonical form (what is stored and digested) is JSON Lines: a header object, then one object per
entry sorted by the UTF-8 bytes of its path, every object with sorted keys and no spaces. The digest
of a version is the xxh3-128 of these bytes. JSON Lines lets a million-entry manifest be parsed and
indexed one line at a time, so no Python object per entry outlives the parse.

In memory, a Manifest keeps columns: all paths in one bytes buffer with an offsets array, sizes in an
array, binary digests in one buffer, and a sparse dict for the rare entries with chunks or a reference.
"""

import bisect
import json
from array import array
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from .errors import CorruptData, InvalidPath
from .hashing import CHUNK_SIZE, digest_bytes, is_digest
from .paths import normalize_entry_path

FORMAT = "artifactfs-manifest"
FORMAT_VERSION = 1
EXECUTABLE_MODE = 0o755
_ZERO_DIGEST = bytes(16)


@dataclass(frozen=True)
class Entry:
    path: str
    size: int
    digest: str | None  # None only for a reference recorded without checksum
    chunks: tuple[str, ...] | None = None
    ref: str | None = None
    etag: str | None = None
    version_id: str | None = None
    executable: bool = False

    def to_json(self) -> dict:
        obj: dict = {"path": self.path, "size": self.size}
        if self.digest is not None:
            obj["digest"] = self.digest
        if self.chunks:
            obj["chunks"] = list(self.chunks)
        if self.ref is not None:
            obj["ref"] = self.ref
        if self.etag is not None:
            obj["etag"] = self.etag
        if self.version_id is not None:
            obj["version_id"] = self.version_id
        if self.executable:
            obj["mode"] = EXECUTABLE_MODE
        return obj

    @classmethod
    def from_json(cls, obj: dict) -> "Entry":
        try:
            path = obj["path"]
            size = obj["size"]
            digest = obj.get("digest")
            chunks = obj.get("chunks")
            if not isinstance(size, int) or size < 0:
                raise CorruptData(f"manifest entry {path!r} has an invalid size")
            if digest is not None and not is_digest(digest):
                raise CorruptData(f"manifest entry {path!r} has an invalid digest")
            if digest is None and obj.get("ref") is None:
                raise CorruptData(f"manifest entry {path!r} has neither digest nor ref")
            if chunks is not None:
                if not all(isinstance(c, str) and is_digest(c) for c in chunks):
                    raise CorruptData(f"manifest entry {path!r} has an invalid chunk digest")
                chunks = tuple(chunks)
            return cls(path, size, digest, chunks, obj.get("ref"), obj.get("etag"), obj.get("version_id"),
                       obj.get("mode") == EXECUTABLE_MODE)
        except (KeyError, TypeError, AttributeError) as exc:
            raise CorruptData(f"malformed manifest entry: {exc}") from None


def canonical_json(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class _PathColumn:
    """Sequence view of the packed paths, so `bisect` can search them without unpacking."""

    def __init__(self, blob: bytes, offsets: array):
        self.blob, self.offsets = blob, offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> bytes:
        return self.blob[self.offsets[i]:self.offsets[i + 1]]


@dataclass
class DirChild:
    name: str
    is_dir: bool
    index: int  # entry index of the file, or the first entry under the directory
    next_index: int  # where a listing resumes after this child


class Manifest:
    """An immutable, sorted list of entries, stored column-wise."""

    def __init__(self, chunk_size: int, paths: bytes, offsets: array, sizes: array, digests: bytes,
                 executable: bytes, extras: dict[int, dict]):
        self.chunk_size = chunk_size
        self._paths = _PathColumn(paths, offsets)
        self._sizes = sizes
        self._digests = digests
        self._executable = executable
        self._extras = extras
        self.total_size = sum(sizes)
        self._canonical: bytes | None = None
        self._digest: str | None = None
        self._digest_set: set[bytes] | None = None

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_entries(cls, entries: Iterable[Entry], chunk_size: int = CHUNK_SIZE) -> "Manifest":
        """Build from entries in any order; rejects duplicate paths and file/directory clashes."""
        ordered = sorted(entries, key=lambda e: e.path.encode("utf-8"))
        return cls._pack(ordered, chunk_size)

    @classmethod
    def _pack(cls, ordered: Iterable[Entry], chunk_size: int) -> "Manifest":
        paths = bytearray()
        offsets = array("Q", [0])
        sizes = array("Q")
        digests = bytearray()
        executable = bytearray()
        extras: dict[int, dict] = {}
        prev = None
        for i, e in enumerate(ordered):
            if normalize_entry_path(e.path) != e.path:
                raise InvalidPath(f"entry path {e.path!r} is not normalized")
            p = e.path.encode("utf-8")
            if prev is not None and p <= prev:
                if p == prev:
                    raise InvalidPath(f"duplicate entry path {e.path!r}")
                raise CorruptData("manifest entries are not sorted by path")
            prev = p
            paths += p
            offsets.append(len(paths))
            sizes.append(e.size)
            digests += bytes.fromhex(e.digest) if e.digest else _ZERO_DIGEST
            executable.append(1 if e.executable else 0)
            extra = {k: v for k, v in (("chunks", e.chunks), ("ref", e.ref), ("etag", e.etag),
                                       ("version_id", e.version_id)) if v}
            if e.digest is None:
                extra["no_digest"] = True
            if extra:
                extras[i] = extra
        m = cls(chunk_size, bytes(paths), offsets, sizes, bytes(digests), bytes(executable), extras)
        m._check_tree()
        return m

    def _check_tree(self) -> None:
        for i in range(len(self) - 1):
            p = self._paths[i]
            if not self._paths[i + 1].startswith(p):
                continue  # paths sharing a prefix are contiguous: nothing can lie under p
            j = bisect.bisect_left(self._paths, p + b"/", i + 1)
            if j < len(self) and self._paths[j].startswith(p + b"/"):
                raise InvalidPath(f"entry path {p.decode()!r} is both a file and a directory")

    @classmethod
    def parse(cls, data: bytes) -> "Manifest":
        """Parse canonical bytes; the result's digest is that of `data`."""
        lines = iter(data.split(b"\n"))
        try:
            header = json.loads(next(lines))
        except (StopIteration, ValueError):
            raise CorruptData("manifest has no valid header") from None
        if header.get("type") != FORMAT or header.get("format") != FORMAT_VERSION:
            raise CorruptData(f"unsupported manifest format {header!r}")

        def entries() -> Iterator[Entry]:
            for line in lines:
                if line:
                    try:
                        yield Entry.from_json(json.loads(line))
                    except ValueError as exc:
                        raise CorruptData(f"malformed manifest line: {exc}") from None

        m = cls._pack(entries(), int(header["chunk_size"]))
        m._canonical = data if data.endswith(b"\n") or not data else None
        m._digest = digest_bytes(data)
        return m

    # ---- canonical form -----------------------------------------------------------------------
    def header(self) -> dict:
        return {"type": FORMAT, "format": FORMAT_VERSION, "chunk_size": self.chunk_size}

    def to_bytes(self) -> bytes:
        if self._canonical is None:
            parts = [canonical_json(self.header())]
            parts.extend(canonical_json(self[i].to_json()) for i in range(len(self)))
            self._canonical = b"\n".join(parts) + b"\n"
        return self._canonical

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
        return Entry(self._paths[i].decode("utf-8"), self._sizes[i], digest, extra.get("chunks"),
                     extra.get("ref"), extra.get("etag"), extra.get("version_id"), bool(self._executable[i]))

    def __iter__(self) -> Iterator[Entry]:
        return (self[i] for i in range(len(self)))

    def size_of(self, i: int) -> int:
        return self._sizes[i]

    def path_of(self, i: int) -> str:
        return self._paths[i].decode("utf-8")

    def is_executable(self, i: int) -> bool:
        return bool(self._executable[i])

    def has_digest(self, digest: str) -> bool:
        """Whether some entry's content has this digest (the set is built on first use)."""
        if self._digest_set is None:
            self._digest_set = {self._digests[16 * i:16 * i + 16] for i in range(len(self))}
        return bytes.fromhex(digest) in self._digest_set

    def find(self, path: str) -> int | None:
        """Index of the file at `path`, or None."""
        key = path.encode("utf-8")
        i = bisect.bisect_left(self._paths, key)
        return i if i < len(self) and self._paths[i] == key else None

    def dir_range(self, dirpath: str) -> tuple[int, int]:
        """Entry indexes [start, end) of everything under `dirpath` ('' is the root)."""
        if not dirpath:
            return 0, len(self)
        prefix = dirpath.encode("utf-8") + b"/"
        start = bisect.bisect_left(self._paths, prefix)
        end = bisect.bisect_left(self._paths, dirpath.encode("utf-8") + b"0", start)  # '0' follows '/'
        return start, end

    def is_dir(self, dirpath: str) -> bool:
        start, end = self.dir_range(dirpath)
        return end > start

    def children(self, dirpath: str, start: int | None = None) -> Iterator[DirChild]:
        """Immediate children of `dirpath` in path order, resuming at entry index `start`.

        Work is proportional to the children returned: a subdirectory is skipped with one search.
        """
        lo, hi = self.dir_range(dirpath)
        cut = len(dirpath.encode("utf-8")) + 1 if dirpath else 0
        i = lo if start is None else max(start, lo)
        while i < hi:
            rel = self._paths[i][cut:]
            slash = rel.find(b"/")
            if slash < 0:
                yield DirChild(rel.decode("utf-8"), False, i, i + 1)
                i += 1
            else:
                sub = self._paths[i][:cut + slash]
                end = bisect.bisect_left(self._paths, sub + b"0", i, hi)
                yield DirChild(rel[:slash].decode("utf-8"), True, i, end)
                i = end

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
