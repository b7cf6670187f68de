"""Manifests: the file list of one version, in canonical form and in a compact in-memory index.

Canonical form (what is stored and digested) is JSON Lines: a header object, then one object per
entry sorted by the UTF-8 bytes of its path, every object with sorted keys and no spaces. The digest
of a version is the xxh3-128 of these bytes. JSON Lines lets a million-entry manifest be parsed and
indexed one line at a time, so no Python object per entry outlives the parse.

In memory, a Manifest keeps columns: all paths in one bytes buffer with an offsets array, sizes in an
array, binary digests in one buffer, and a sparse dict for the rare entries with chunks or a reference.
"""

import bisect
import itertools
import json
import operator
import re
from array import array
from dataclasses import dataclass
from typing import Iterable, Iterator

from .errors import CorruptData, InvalidPath
from .hashing import CHUNK_SIZE, digest_bytes, is_digest
from .paths import MAX_PATH_BYTES, MAX_SEGMENT_BYTES, normalize_entry_path

FORMAT = "artifactfs-manifest"
FORMAT_VERSION = 2  # 2: entries may be empty directories and symbolic links (written only when one is)
PLAIN_FORMAT_VERSION = 1  # files only: what a manifest without directories or links is written as
FILE, DIR, LINK = "file", "dir", "link"
MAX_LINK_TARGET = 4095  # bytes, as PATH_MAX - 1
EXECUTABLE_MODE = 0o755
_ZERO_DIGEST = bytes(16)
MAX_SIZE = 2**53 - 1  # file sizes and pack offsets: what a JSON number holds exactly, and st_size too
MIN_CHUNK_SIZE = 4096
MAX_CHUNK_SIZE = 64 * 1024 * 1024  # a piece is at most this long: what one read may allocate
EMPTY_DIGEST = digest_bytes(b"")


def check_chunk_size(value) -> int:
    """The manifest header's chunk size, if it is one a reader can work with; CorruptData if not."""
    if type(value) is not int or not MIN_CHUNK_SIZE <= value <= MAX_CHUNK_SIZE:
        raise CorruptData(f"manifest chunk_size {value!r:.40} is not a whole number from {MIN_CHUNK_SIZE} "
                          f"to {MAX_CHUNK_SIZE}")
    return value


def check_entry(e: "Entry", chunk_size: int) -> None:
    """What reading `e` relies on and the parse does not see line by line (it needs the chunk size):
    a size its pieces can hold exactly. CorruptData if not, so that a hostile or damaged manifest
    gives an error, never a short, empty or wrong-sized file. Checked when the entry is read (fetch.py)."""
    if e.digest is None:  # a reference checked by ETag or not at all (or no file: nothing to read)
        return
    count = -(-e.size // chunk_size)
    if e.chunks is not None and (e.size <= chunk_size or len(e.chunks) != count):
        raise CorruptData(f"manifest entry {e.path!r}: {len(e.chunks)} chunks cannot hold {e.size} bytes "
                          f"in chunks of {chunk_size}")
    if e.chunks is None and e.size > chunk_size:
        raise CorruptData(f"manifest entry {e.path!r}: {e.size} bytes recorded without chunk digests")
    if e.size == 0 and e.digest != EMPTY_DIGEST:
        raise CorruptData(f"manifest entry {e.path!r}: size 0 with the digest of non-empty content")
    if e.offset + e.size > MAX_SIZE:
        raise CorruptData(f"manifest entry {e.path!r}: pack offset {e.offset} is out of range")


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
    pack: str | None = None  # the content is bytes [offset, offset+size) of this pack (docs/FORMAT.md)
    offset: int = 0
    kind: str = FILE  # DIR: an empty directory; LINK: a symbolic link to `target` (size 0, no digest)
    target: str | None = None

    @classmethod
    def directory(cls, path: str) -> "Entry":
        return cls(path, 0, None, kind=DIR)

    @classmethod
    def link(cls, path: str, target: str) -> "Entry":
        return cls(path, 0, None, kind=LINK, target=check_link_target(target, path))

    @property
    def is_file(self) -> bool:
        return self.kind == FILE

    def to_json(self) -> dict:
        if self.kind != FILE:
            obj = {"kind": self.kind, "path": self.path, "size": 0}
            if self.target is not None:
                obj["target"] = self.target
            return obj
        obj: dict = {"path": self.path, "size": self.size}
        if self.digest is not None:
            obj["digest"] = self.digest
        if self.pack is not None:
            obj["pack"] = self.pack
            obj["offset"] = self.offset
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
            kind = obj.get("kind", FILE)
            if kind != FILE:
                return cls._special_from_json(obj, path, kind)
            size = obj["size"]
            digest = obj.get("digest")
            chunks = obj.get("chunks")
            if type(size) is not int or not 0 <= size <= MAX_SIZE:
                raise CorruptData(f"manifest entry {path!r} has an invalid size")
            if digest is not None and not is_digest(digest):
                raise CorruptData(f"manifest entry {path!r} has an invalid digest")
            if digest is None and obj.get("ref") is None:
                raise CorruptData(f"manifest entry {path!r} has neither digest nor ref")
            if chunks is not None:
                if not all(isinstance(c, str) and is_digest(c) for c in chunks):
                    raise CorruptData(f"manifest entry {path!r} has an invalid chunk digest")
                chunks = tuple(chunks)
            pack, offset = obj.get("pack"), obj.get("offset", 0)
            if pack is not None and not (is_digest(pack) and digest and not chunks and obj.get("ref") is None
                                         and type(offset) is int and 0 <= offset <= MAX_SIZE):
                raise CorruptData(f"manifest entry {path!r} has an invalid pack location "
                                  f"(pack {pack!r:.40}, offset {offset!r:.24})")
            if pack is None and "offset" in obj:
                raise CorruptData(f"manifest entry {path!r} has an offset but no pack")
            return cls(path, size, digest, chunks, obj.get("ref"), obj.get("etag"), obj.get("version_id"),
                       obj.get("mode") == EXECUTABLE_MODE, pack, offset)
        except (KeyError, TypeError, AttributeError) as exc:
            raise CorruptData(f"malformed manifest entry: {exc}") from None

    @classmethod
    def _special_from_json(cls, obj: dict, path, kind) -> "Entry":
        if kind == DIR and obj == {"kind": DIR, "path": path, "size": 0}:
            return cls.directory(path)
        if kind == LINK and set(obj) == {"kind", "path", "size", "target"} and obj["size"] == 0:
            try:
                return cls.link(path, obj["target"])
            except InvalidPath as exc:
                raise CorruptData(f"manifest entry {path!r}: {exc}") from None
        raise CorruptData(f"manifest entry {path!r} of kind {kind!r:.20} is malformed")


def check_link_target(target, path: str) -> str:
    """A symbolic link's target as the format holds it: any non-empty text without NUL, up to
    MAX_LINK_TARGET bytes. Where it points is not checked: it is stored as written, never followed."""
    if not isinstance(target, str) or not target or "\0" in target:
        raise InvalidPath(f"symbolic link {path!r} has an invalid target {target!r:.80}")
    try:
        size = len(target.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidPath(f"symbolic link {path!r}: its target is not valid UTF-8") from None
    if size > MAX_LINK_TARGET:
        raise InvalidPath(f"symbolic link {path!r}: its target is {size} bytes, more than {MAX_LINK_TARGET}")
    return target


def canonical_json(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


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


_PARSE_WINDOW = 4 * 1024 * 1024
_CHILD_BATCH = 256  # children per child_rows call
# A plain canonical entry line: keys sorted, no escapes in the path, nothing but digest, path, size and
# optionally a pack location (offset, pack), numbers of at most 15 digits (below MAX_SIZE; a longer one
# takes the slow path, which checks it). Groups: digest, offset, pack, path, size.
_PLAIN_LINE = re.compile(rb'^\{"digest":"([0-9a-f]{32})",(?:"offset":(0|[1-9][0-9]{0,14}),"pack":"([0-9a-f]{32})",)?'
                         rb'"path":"([^"\\\x00-\x1f]+)","size":(0|[1-9][0-9]{0,14})\}\n', re.MULTILINE)


def _plain_paths_ok(paths: list[bytes], joined: bytes) -> bool:
    """True if no path of `joined` ("\n"-separated, none holding "\n") is one that normalize_entry_path
    would change or reject. With every separator made a slash, each path's segments sit between two
    slashes, so an empty segment (a leading, trailing or double slash) shows as "//" and a "." or ".."
    segment as "/./" or "/../": one or two scans of the whole run instead of one per kind of mistake."""
    slashed = b"/" + joined.replace(b"\n", b"/") + b"/"
    if b"//" in slashed or (b"/." in slashed and (b"/./" in slashed or b"/../" in slashed)):
        return False
    if max(map(len, paths)) > MAX_SEGMENT_BYTES:  # rare: check the long ones segment by segment
        for p in paths:
            if len(p) > MAX_SEGMENT_BYTES and (len(p) > MAX_PATH_BYTES
                                               or max(map(len, p.split(b"/"))) > MAX_SEGMENT_BYTES):
                return False
    return True


def checked_plain_paths(paths: list[bytes], prev: bytes | None = None) -> list[int] | None:
    """Check a run of entry paths that hold no newline, no NUL and no empty one, coming after `prev`
    (the run before it, if any), with a few C-level passes: each UTF-8 and normalized, all strictly
    increasing. None if any is not (the caller's slow path says which); else the positions i whose path
    starts with the one before it (`prev` before the first), the only candidates for a file that is also
    a directory (see Manifest._check_tree)."""
    joined = b"\n".join(paths)
    try:
        joined.decode("utf-8")  # joined by "\n", which no multi-byte character holds: each path on its own
    except UnicodeDecodeError:
        return None
    if not _plain_paths_ok(paths, joined):
        return None
    befores = paths[:-1] if prev is None else [prev, *paths[:-1]]
    afters = paths[1:] if prev is None else paths
    if not all(map(operator.lt, befores, afters)):
        return None
    return list(itertools.compress(range(len(afters)), map(bytes.startswith, afters, befores)))


_DIGEST_RE = re.compile(r"[0-9a-f]{32}")


def _simple_normal_path(path: str, encoded: bytes) -> bool:
    """True for the common case of a path that is already normalized (checked without splitting)."""
    if not path or path[0] == "/" or path[-1] == "/" or "//" in path or "\x00" in path or len(encoded) > MAX_PATH_BYTES:
        return False
    if ("." in path and (path.startswith("./") or path.startswith("../") or path in (".", "..")
                         or "/./" in path or "/../" in path or path.endswith("/.") or path.endswith("/.."))):
        return False
    if len(encoded) > MAX_SEGMENT_BYTES and any(len(seg.encode("utf-8")) > MAX_SEGMENT_BYTES
                                                for seg in path.split("/")):
        return False
    return True


class _Columns:
    """Builds the column buffers of a Manifest one entry at a time, in path order, validating as it goes."""

    def __init__(self):
        self.paths = bytearray()
        self.offsets = array("Q", [0])
        self.sizes = array("Q")
        self.digests = bytearray()
        self.executable = bytearray()
        self.extras: dict[int, dict] = {}
        self.packs = _PackColumns()
        self.prev: bytes | None = None
        self.suspects: list[int] = []  # entries whose successor starts with their path (see _check_tree)
        self.specials = 0  # directories and links

    def _add_path(self, path: str, encoded: bytes) -> None:
        prev = self.prev
        if prev is not None and encoded <= prev:
            if encoded == prev:
                raise InvalidPath(f"duplicate entry path {path!r}")
            raise CorruptData("manifest entries are not sorted by path")
        if prev is not None and encoded.startswith(prev):
            self.suspects.append(len(self.offsets) - 2)
        self.prev = encoded
        self.paths += encoded
        self.offsets.append(len(self.paths))

    def add_json(self, obj) -> None:
        """One parsed manifest line. Plain entries (path, size, digest) take a fast path; anything else
        goes through Entry.from_json and its full checks."""
        if type(obj) is dict and len(obj) == 3:
            path, size, digest = obj.get("path"), obj.get("size"), obj.get("digest")
            if (type(path) is str and type(size) is int and 0 <= size <= MAX_SIZE and type(digest) is str
                    and _DIGEST_RE.fullmatch(digest)):
                encoded = path.encode("utf-8", "surrogatepass")
                if _simple_normal_path(path, encoded):
                    self._add_path(path, encoded)
                    self.sizes.append(size)
                    self.digests += bytes.fromhex(digest)
                    self.executable.append(0)
                    self.packs.add(None, 0)
                    return
        if not isinstance(obj, dict):
            raise CorruptData("malformed manifest entry: not an object")
        self.add_entry(Entry.from_json(obj))

    def add_entry(self, e: Entry) -> None:
        if normalize_entry_path(e.path) != e.path:
            raise InvalidPath(f"entry path {e.path!r} is not normalized")
        i = len(self.sizes)
        self._add_path(e.path, e.path.encode("utf-8"))
        self.sizes.append(e.size)
        self.digests += bytes.fromhex(e.digest) if e.digest else _ZERO_DIGEST
        self.executable.append(1 if e.executable else 0)
        self.packs.add(e.pack, e.offset)
        extra = {k: v for k, v in (("chunks", e.chunks), ("ref", e.ref), ("etag", e.etag),
                                   ("version_id", e.version_id), ("target", e.target)) if v}
        if e.digest is None:
            extra["no_digest"] = True
        if e.kind != FILE:
            extra["kind"] = e.kind
            self.specials += 1
        if extra:
            self.extras[i] = extra

    def build(self, cls, chunk_size: int) -> "Manifest":
        m = cls(chunk_size, bytes(self.paths), self.offsets, self.sizes, bytes(self.digests), bytes(self.executable),
                self.extras, self.packs)
        m.specials = self.specials
        m._check_tree(self.suspects)
        return m

    def add_plain_window(self, window: bytes) -> bool:
        """Add a window of whole lines if every one is a plain, valid entry; False (nothing added) if not."""
        rows = _PLAIN_LINE.findall(window)
        if len(rows) != window.count(b"\n") or not rows:
            return False
        paths = [r[3] for r in rows]
        prev = self.prev
        suspects = checked_plain_paths(paths, prev)
        if suspects is None:
            return False  # the slow path says what is wrong
        base = len(self.sizes) - (0 if prev is None else 1)
        self.suspects.extend(base + i for i in suspects)
        ends = itertools.accumulate(map(len, paths), initial=len(self.paths))
        next(ends)  # `initial` is the previous end, already there
        self.offsets.extend(ends)
        self.paths += b"".join(paths)
        self.sizes.extend(map(int, (r[4] for r in rows)))
        self.digests += bytes.fromhex(b"".join(r[0] for r in rows).decode("ascii"))
        self.executable += bytes(len(rows))
        self.packs.add_rows(rows)
        self.prev = paths[-1]
        return True


class _PackColumns:
    """Pack locations per entry: an index into a table of pack digests (0: not packed) and an offset.
    The two arrays exist only once some entry is packed: a manifest without packs costs nothing here."""

    def __init__(self):
        self.count = 0  # entries seen
        self.ids: array | None = None
        self.offsets: array | None = None
        self.table: list[str | None] = [None]
        self._index: dict[bytes, int] = {b"": 0}  # hex digest (as in the manifest line) -> table index

    @classmethod
    def none(cls, count: int) -> "_PackColumns":
        cols = cls()
        cols.count = count
        return cols

    def _id(self, hexdigest: bytes) -> int:
        i = self._index.get(hexdigest)
        if i is None:
            i = self._index[hexdigest] = len(self.table)
            self.table.append(hexdigest.decode("ascii"))
        return i

    def _columns(self) -> None:
        if self.ids is None:
            self.ids = array("I", bytes(4 * self.count))
            self.offsets = array("Q", bytes(8 * self.count))

    def add(self, pack: str | None, offset: int) -> None:
        if pack is None and self.ids is None:
            self.count += 1
            return
        self._columns()
        self.count += 1
        self.ids.append(self._id(pack.encode("ascii")) if pack else 0)
        self.offsets.append(offset)

    def add_rows(self, rows: list[tuple[bytes, ...]]) -> None:
        """Regex rows of plain lines (digest, offset, pack, path, size); offset and pack may be empty."""
        if self.ids is None and not any(r[2] for r in rows):
            self.count += len(rows)
            return
        self._columns()
        self.count += len(rows)
        get = self._index.get
        ids = [get(r[2]) for r in rows]
        if None in ids:  # new packs in this window: register each once, then look up again
            for pack in {r[2] for r in rows if get(r[2]) is None}:
                self._id(pack)
            ids = [get(r[2]) for r in rows]
        self.ids.extend(ids)
        self.offsets.extend(map(int, (r[1] or b"0" for r in rows)))

    def location(self, i: int) -> tuple[str | None, int]:
        if self.ids is None:
            return None, 0
        pid = self.ids[i]
        return (self.table[pid], self.offsets[i]) if pid else (None, 0)


class Manifest:
    """An immutable, sorted list of entries, stored column-wise."""

    def __init__(self, chunk_size: int, paths: bytes, offsets: array, sizes: array, digests: bytes,
                 executable: bytes, extras: dict[int, dict], packs: "_PackColumns | None" = None):
        self.chunk_size = chunk_size
        self._paths = _PathColumn(paths, offsets)
        self._sizes = sizes
        self._digests = digests
        self._executable = executable
        self._extras = extras
        self._packs = packs if packs is not None else _PackColumns.none(len(sizes))
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
        cols = _Columns()
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
        """Parse canonical bytes; the result's digest is that of `data`.

        Windows of plain lines (`{"digest":..,"path":..,"size":..}`, the vast majority) are matched and
        validated with a few C-level passes; any other window goes line by line through Entry.from_json.
        """
        head_end = data.find(b"\n")
        try:
            header = json.loads(data[:head_end] if head_end >= 0 else data)
        except ValueError:
            raise CorruptData("manifest has no valid header") from None
        if (not isinstance(header, dict) or header.get("type") != FORMAT
                or header.get("format") not in (PLAIN_FORMAT_VERSION, FORMAT_VERSION)):
            raise CorruptData(f"unsupported manifest format {header!r:.200}")
        cols = _Columns()
        pos = head_end + 1 if head_end >= 0 else len(data)
        while pos < len(data):
            cut = data.find(b"\n", min(pos + _PARSE_WINDOW, len(data) - 1))
            cut = len(data) if cut < 0 else cut + 1
            window = data[pos:cut]
            if not window.endswith(b"\n"):
                window += b"\n"
            if not cols.add_plain_window(window):
                for line in window.split(b"\n"):
                    if line:
                        try:
                            obj = json.loads(line)
                        except ValueError as exc:
                            raise CorruptData(f"malformed manifest line: {exc}") from None
                        cols.add_json(obj)
            pos = cut
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
                     pack, offset, extra.get("kind", FILE), extra.get("target"))

    def __iter__(self) -> Iterator[Entry]:
        return (self[i] for i in range(len(self)))

    def size_of(self, i: int) -> int:
        return self._sizes[i]

    def kind_of(self, i: int) -> str:
        return self._extras[i].get("kind", FILE) if self.specials and i in self._extras else FILE

    def target_of(self, i: int) -> str | None:
        return self._extras.get(i, {}).get("target")

    def path_of(self, i: int) -> str:
        return self._paths[i].decode("utf-8")

    def is_executable(self, i: int) -> bool:
        return bool(self._executable[i])

    def location(self, digest: str) -> tuple[str | None, int] | None:
        """Where an entry with this content is stored: (pack, offset), (None, 0) for its own blob, or
        None if no entry has it. The index is built on first use."""
        if self._digest_index is None:
            d, extras = self._digests, self._extras  # references' bytes are not in the store: skipped
            self._digest_index = {d[16 * i:16 * i + 16]: i for i in range(len(self) - 1, -1, -1)
                                  if i not in extras or not ("ref" in extras[i] or "no_digest" in extras[i])}
        i = self._digest_index.get(bytes.fromhex(digest))
        return None if i is None else self._packs.location(i)

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
                    names = [blob[a:b] for a, b in zip(offsets[i:j], offsets[i + 1:j + 1])]
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
