"""Records to columns: canonical JSON lines (or Entry objects) into the column buffers of a Manifest,
validated on the way. The reverse, columns to records, is Manifest.__getitem__ and Manifest.to_bytes.

Windows of plain lines (`{"digest":..,"path":..,"size":..}`, the vast majority) are matched and
validated with a few C-level passes; any other window goes line by line through Entry.from_json.
"""

import itertools
import json
import operator
import re
from array import array

from ..errors import CorruptData, InvalidPath
from ..paths import MAX_PATH_BYTES, MAX_SEGMENT_BYTES, normalize_entry_path
from .columns import PackColumns
from .entry import FILE, FORMAT, FORMAT_VERSION, MAX_SIZE, PLAIN_FORMAT_VERSION, Entry

_ZERO_DIGEST = bytes(16)

_PARSE_WINDOW = 4 * 1024 * 1024
# A plain canonical entry line: keys sorted, no escapes in the path, nothing but digest, path, size and
# optionally a pack location (offset, pack), numbers of at most 15 digits (below MAX_SIZE; a longer one
# takes the slow path, which checks it). Groups: digest, offset, pack, path, size.
_PLAIN_LINE = re.compile(rb'^\{"digest":"([0-9a-f]{32})",(?:"offset":(0|[1-9][0-9]{0,14}),"pack":"([0-9a-f]{32})",)?'
                         rb'"path":"([^"\\\x00-\x1f]+)","size":(0|[1-9][0-9]{0,14})\}\n', re.MULTILINE)


def _plain_paths_ok(paths: list[bytes], slashed: bytes, longest: int) -> bool:
    """True if no path of `slashed` (the paths with a slash before, between and after each) is one that
    normalize_entry_path would change or reject. Each path's segments sit between two slashes, so an
    empty segment (a leading, trailing or double slash, or an empty path) shows as "//" and a "." or ".."
    segment as "/./" or "/../": one or two scans of the whole run instead of one per kind of mistake."""
    if b"//" in slashed or (b"/." in slashed and (b"/./" in slashed or b"/../" in slashed)):
        return False
    if longest > MAX_SEGMENT_BYTES:  # rare: check the long ones segment by segment
        for p in paths:
            if len(p) > MAX_SEGMENT_BYTES and (len(p) > MAX_PATH_BYTES
                                               or max(map(len, p.split(b"/"))) > MAX_SEGMENT_BYTES):
                return False
    return True


def checked_plain_paths(paths: list[bytes], prev: bytes | None = None, terminated: bytes | None = None,
                        longest: int | None = None) -> list[int] | None:
    """Check a run of entry paths coming after `prev` (the run before it, if any), with a few C-level
    passes: each UTF-8 and normalized, all strictly increasing. The paths hold no newline, no NUL and no
    empty one, unless `terminated` is given: the same paths each followed by a NUL (the columnar form's
    text, which may hold any other byte); `longest`: the length of the longest, if known. None if any
    is not sound (the caller's slow path says which); else the positions i whose path starts with the
    one before it (`prev` before the first), the only candidates for a file that is also a directory
    (see Manifest._check_tree)."""
    if terminated is None:
        joined = b"\n".join(paths)
        slashed = b"/" + joined.replace(b"\n", b"/") + b"/"
    else:
        joined, slashed = terminated, b"/" + terminated.replace(b"\0", b"/")
    try:
        joined.decode("utf-8")  # separated by a byte no multi-byte character holds: each path on its own
    except UnicodeDecodeError:
        return None
    if not _plain_paths_ok(paths, slashed, max(map(len, paths)) if longest is None else longest):
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
    return not (len(encoded) > MAX_SEGMENT_BYTES
                and any(len(seg.encode("utf-8")) > MAX_SEGMENT_BYTES for seg in path.split("/")))


class ColumnsBuilder:
    """Builds the column buffers of a Manifest one entry at a time, in path order, validating as it goes."""

    def __init__(self):
        self.paths = bytearray()
        self.offsets = array("Q", [0])
        self.sizes = array("Q")
        self.digests = bytearray()
        self.executable = bytearray()
        self.extras: dict[int, dict] = {}
        self.packs = PackColumns()
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
        extra: dict[str, object] = {k: v for k, v in (("chunks", e.chunks), ("ref", e.ref), ("etag", e.etag),
                                   ("version_id", e.version_id), ("target", e.target), ("blocks", e.blocks)) if v}
        if e.digest is None:
            extra["no_digest"] = True
        if e.kind != FILE:
            extra["kind"] = e.kind
            self.specials += 1
        if extra:
            self.extras[i] = extra

    def build(self, cls, chunk_size: int):
        """A `cls` (Manifest) over the built columns, its tree checked."""
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


def parse_lines(data: bytes) -> tuple[dict, "ColumnsBuilder"]:
    """The header of canonical manifest bytes and the columns of their entries."""
    head_end = data.find(b"\n")
    try:
        header = json.loads(data[:head_end] if head_end >= 0 else data)
    except ValueError:
        raise CorruptData("manifest has no valid header") from None
    if (not isinstance(header, dict) or header.get("type") != FORMAT
            or header.get("format") not in (PLAIN_FORMAT_VERSION, FORMAT_VERSION)):
        raise CorruptData(f"unsupported manifest format {header!r:.200}")
    cols = ColumnsBuilder()
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
    return header, cols
