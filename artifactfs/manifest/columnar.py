"""The columnar form of a manifest: the parsed columns of a Manifest, ready to load without parsing.

The canonical manifest (JSON Lines, see docs/FORMAT.md) stays the one source of truth; this form is
derived from it, stored beside it (`manifests/<xx>/<digest>.columns`) and in the local manifest cache,
so that a mount or a CLI command loads a version of millions of entries in a fraction of the time the
JSON parse takes. Anything wrong with it (missing, damaged, an unknown layout) only means the JSON is
parsed instead.

Layout 2 (written now): MAGIC + a u32 (little-endian) header length + the header (zlib'd JSON) + the
sections' frames + a 16-byte xxh3-128 of everything before it. The header names the manifest digest,
the chunk size, the entry count, the pack table, the extras (references, chunk lists: rare) and, per
section, its frames as [compressed length, length]. Each frame is a zlib stream of at most FRAME bytes
(a frame of paths ends at the end of a path), so frames are inflated in parallel and checked as they
come, with no copy of the whole. Sections, in order: paths (each followed by a NUL), sizes (u64),
digests (16 bytes each), executable flags (1 byte each) and, when some entry is packed, pack ids (u32,
0 = not packed) and pack offsets (u64); numbers little-endian.

Layout 1 (read only; what earlier releases wrote): zlib(header line + sections) + the xxh3-128 of the compressed
bytes, the paths concatenated with a section of their ends (u64).

Decoding checks what a reader relies on: the checksum, the frame and section lengths, that paths are
sorted, unique and normalized (no traversal can come in this way), and pack ids within the table.
"""

import io
import itertools
import json
import operator
import struct
import sys
import zlib
from array import array
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import xxhash

from ..errors import CorruptData, InvalidPath
from ..hashing import is_digest
from ..paths import MAX_PATH_BYTES, normalize_entry_path
from .columns import PackColumns
from .entry import DIR, LINK, MAX_SIZE, check_chunk_size, check_link_target
from .records import checked_plain_paths
from .table import Manifest

TYPE = "artifactfs-manifest-columns"
MAGIC = b"AFCOLS\x02\n"
FRAME = 4 * 2**20  # bytes per zlib frame: ~40 frames per million entries, inflated two at a time
_WORKERS = 2  # inflating threads beside the checks (zlib runs without the GIL)
_CHECKSUM = 16
_MAX_HEADER = 2**30  # inflated: the extras of millions of references fit, a zip bomb does not
_TEXT_FIELDS = ("ref", "etag", "version_id")
_LITTLE = sys.byteorder == "little"
# fixed-width sections: bytes per entry, and the array type Manifest holds them in (None: bytes)
_FIXED = {"sizes": (8, "Q"), "digests": (16, None), "executable": (1, None), "pack_ids": (4, "I"),
          "pack_offsets": (8, "Q")}
_PATHS = "paths"


def _le(a: array) -> bytes:
    if _LITTLE:
        return a.tobytes()
    b = array(a.typecode, a)
    b.byteswap()
    return b.tobytes()


def _array(typecode: str, data) -> array:
    a = array(typecode)
    a.frombytes(data)
    if not _LITTLE:
        a.byteswap()
    return a


def _pool(jobs: int):
    """Threads for zlib, or none for a small form (one frame each way)."""
    return ThreadPoolExecutor(_WORKERS) if jobs > 2 else None


# ---- encoding (layout 2) ------------------------------------------------------------------------
def _path_text(m: Manifest) -> bytes:
    blob, ends = m._paths.blob, m._paths.offsets
    if not len(m):
        return b""
    return (b"\0".join([blob[a:b] for a, b in zip(ends, itertools.islice(ends, 1, None), strict=False)])
            + b"\0")


def _cuts(data: bytes, at_nul: bool) -> list[memoryview]:
    """`data` in frames of about FRAME bytes; with `at_nul`, each ending just after a NUL."""
    view, frames, pos = memoryview(data), [], 0
    while pos < len(data):
        end = min(pos + FRAME, len(data))
        if at_nul and end < len(data):
            end = data.index(b"\0", end - 1) + 1
        frames.append(view[pos:end])
        pos = end
    return frames


def encode(m: Manifest) -> bytes:
    packs = m._packs
    sections = [(_PATHS, _path_text(m)), ("sizes", _le(m._sizes)), ("digests", m._digests),
                ("executable", m._executable)]
    if packs.ids is not None and packs.offsets is not None:
        sections += [("pack_ids", _le(packs.ids)), ("pack_offsets", _le(packs.offsets))]
    framed = [(name, _cuts(data, name == _PATHS)) for name, data in sections]
    raw = [frame for _, frames in framed for frame in frames]
    pool = _pool(len(raw))
    try:
        packed = list(pool.map(_deflate, raw) if pool else map(_deflate, raw))
    finally:
        if pool:
            pool.shutdown()
    sizes = iter(packed)
    header = {"type": TYPE, "layout": 2, "manifest": m.digest, "chunk_size": m.chunk_size, "count": len(m),
              "packs": packs.table[1:], "extras": {str(i): e for i, e in m._extras.items()},
              "sections": [[name, [[len(next(sizes)), len(f)] for f in frames]] for name, frames in framed]}
    head = zlib.compress(json.dumps(header, separators=(",", ":")).encode(), 1)
    body = b"".join([MAGIC, struct.pack("<I", len(head)), head, *packed])
    return body + xxhash.xxh3_128_digest(body)


def _deflate(frame) -> bytes:
    return zlib.compress(frame, 1)


# ---- decoding -----------------------------------------------------------------------------------
def decode(data: bytes, digest: str, checked: bool = False) -> Manifest:
    """The Manifest whose canonical digest is `digest`; CorruptData if `data` is not a sound columnar
    form of it (the caller then parses the JSON manifest instead). `checked`: the paths were checked
    before this copy was written (the local cache holds only forms this user's reads checked), so only
    the checksum and the column lengths are."""
    body, checksum = data[:-_CHECKSUM], data[-_CHECKSUM:]
    if len(data) <= _CHECKSUM or xxhash.xxh3_128_digest(body) != checksum:
        raise CorruptData(f"columnar manifest {digest}: checksum mismatch")
    try:
        if not data.startswith(MAGIC):
            return _decode_layout1(body, digest, checked)
        header, frames = _layout(data, digest)
        count = header["count"]
        pool = _pool(sum(map(len, frames.values())))
        try:
            fixed = pool.submit(_fixed_columns, frames, count) if pool else None
            paths, ends, suspects = _path_columns(frames[_PATHS], count, checked, pool)
            columns = fixed.result() if fixed else _fixed_columns(frames, count)
        finally:
            if pool:
                pool.shutdown(cancel_futures=True)
        columns.update(paths=paths, ends=ends)
        return _build(header, columns, count, digest, suspects)
    except (ValueError, KeyError, TypeError, InvalidPath, zlib.error, struct.error) as exc:
        raise CorruptData(f"columnar manifest {digest}: {exc}") from None


def _layout(data: bytes, digest: str) -> tuple[dict, dict[str, list[tuple[memoryview, int]]]]:
    """The header, and each section's frames as (compressed bytes, length) within `data`."""
    (head_len,) = struct.unpack_from("<I", data, len(MAGIC))
    pos = len(MAGIC) + 4 + head_len
    z = zlib.decompressobj()
    header = json.loads(z.decompress(data[len(MAGIC) + 4:pos], _MAX_HEADER))
    if not z.eof:
        raise ValueError("the header is cut short or too long")
    if not isinstance(header, dict) or header.get("type") != TYPE or header.get("layout") != 2:
        raise ValueError("unknown layout")
    if header["manifest"] != digest:
        raise ValueError(f"built for manifest {header['manifest']}")
    if type(header["count"]) is not int or header["count"] < 0:
        raise ValueError("a bad entry count")
    view = memoryview(data)
    frames: dict[str, list[tuple[memoryview, int]]] = {}
    for name, sizes in header["sections"]:
        if name in frames or (name != _PATHS and name not in _FIXED):
            raise ValueError(f"an unknown or repeated section {name!r:.40}")
        frames[name] = []
        for packed, length in sizes:
            if not (type(packed) is type(length) is int and packed > 0 and 0 < length <= FRAME + MAX_PATH_BYTES + 1):
                raise ValueError("a bad frame length")
            frames[name].append((view[pos:pos + packed], length))
            pos += packed
    if pos != len(data) - _CHECKSUM:
        raise ValueError("frame lengths do not add up")
    if (not {_PATHS, "sizes", "digests", "executable"} <= frames.keys()
            or ("pack_ids" in frames) != ("pack_offsets" in frames)):
        raise ValueError("a section is missing")
    return header, frames


def _inflate(frame: tuple[memoryview, int]) -> bytes:
    """One frame, inflated to exactly its stated length (no more is ever inflated: no zip bombs)."""
    packed, length = frame
    z = zlib.decompressobj()
    out = z.decompress(packed, length)
    if len(out) != length or not z.eof or z.unconsumed_tail or z.unused_data:
        raise ValueError("a frame does not inflate to its stated length")
    return out


def _inflated(frames: list, pool: ThreadPoolExecutor | None):
    """Each frame inflated, in order, a few ahead of the caller on the pool's threads."""
    if pool is None:
        yield from map(_inflate, frames)
        return
    ahead: deque = deque()
    for frame in frames:
        ahead.append(pool.submit(_inflate, frame))
        if len(ahead) > _WORKERS:
            yield ahead.popleft().result()
    while ahead:
        yield ahead.popleft().result()


def _fixed_columns(frames: dict, count: int) -> dict:
    """The fixed-width sections, each as the type Manifest holds it (inflated on the calling thread)."""
    out: dict[str, bytes | array] = {}
    for name, section in frames.items():
        if name == _PATHS:
            continue
        width, typecode = _FIXED[name]
        if sum(length for _, length in section) != width * count:
            raise ValueError(f"section {name} does not hold {count} entries")
        if typecode is None:
            out[name] = _joined(map(_inflate, section))
        else:
            a = array(typecode)
            for frame in section:
                a.frombytes(_inflate(frame))
            if not _LITTLE:
                a.byteswap()
            out[name] = a
    return out


def _joined(pieces) -> bytes:
    """The pieces as one bytes object, each freed once copied (b"".join would hold them all beside it:
    BytesIO grows in place and hands its buffer over)."""
    out = io.BytesIO()
    for piece in pieces:
        out.write(piece)
    return out.getvalue()


def _path_columns(frames: list, count: int, checked: bool, pool) -> tuple[bytes, array, list[int] | None]:
    """The paths as Manifest holds them (one buffer and its ends), checked frame by frame as they are
    inflated unless `checked`; with the entries whose successor starts with their path (None if checked)."""
    blob, ends = io.BytesIO(), array("Q", [0])
    suspects: list[int] | None = None if checked else []
    prev: bytes | None = None
    for text in _inflated(frames, pool):
        if not text.endswith(b"\0"):
            raise ValueError("a frame of paths does not end with a whole path")
        parts = text.split(b"\0")
        parts.pop()
        lengths = array("Q", map(len, parts))
        if suspects is not None:
            found = checked_plain_paths(parts, prev, terminated=text, longest=max(lengths))
            if found is None:
                _check_each(parts, prev)
                raise ValueError("paths are not sound")
            base = len(ends) - (1 if prev is None else 2)
            suspects.extend(base + i for i in found)
        ends.extend(itertools.islice(itertools.accumulate(lengths, initial=ends[-1]), 1, None))
        blob.write(text.replace(b"\0", b""))
        prev = parts[-1]
        if len(ends) > count + 1:
            break
    if len(ends) != count + 1:
        raise ValueError(f"the paths are not {count} entries")
    return blob.getvalue(), ends, suspects


def _check_each(paths: list[bytes], prev: bytes | None) -> None:
    """The checks of checked_plain_paths one path at a time (the slow path: rare names, or a run that
    failed the fast checks), with a ValueError naming the first unsound path."""
    for p in paths:
        try:
            path = p.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("paths are not UTF-8") from None
        if normalize_entry_path(path) != path:
            raise ValueError(f"path {path!r} is not normalized")
    if not all(map(operator.lt, paths if prev is None else [prev, *paths], paths[1:] if prev is None else paths)):
        raise ValueError("paths are not sorted and unique")


# ---- layout 1 (read only) -----------------------------------------------------------------------
def _decode_layout1(body: bytes, digest: str, checked: bool) -> Manifest:
    raw = zlib.decompress(body)
    head_end = raw.index(b"\n")
    header = json.loads(raw[:head_end])
    if not isinstance(header, dict) or header.get("type") != TYPE or header.get("layout") != 1:
        raise ValueError("unknown layout")
    if header["manifest"] != digest:
        raise ValueError(f"built for manifest {header['manifest']}")
    count = header["count"]
    sections, pos = {}, head_end + 1
    with memoryview(raw) as view:  # views, not copies: a million entries are ~50 MiB of columns
        for name, length in header["sections"]:
            sections[name] = view[pos:pos + length]
            pos += length
        if pos != len(raw):
            raise ValueError("section lengths do not add up")
        columns = _columns(sections)
    del raw, sections  # before the checks, which make their own temporary copies
    paths, ends = columns["paths"], columns["ends"]
    if not (len(ends) == count + 1 and ends[0] == 0 and ends[-1] == len(paths)):
        raise ValueError("columns of different lengths")
    return _build(header, columns, count, digest, None if checked else _check_paths(paths, ends))


def _columns(sections: dict) -> dict:
    """Each section as the type Manifest holds it: bytes, or an array."""
    out: dict[str, bytes | array] = {name: bytes(sections[name]) for name in ("paths", "digests", "executable")}
    out.update((name, _array(code, sections[name])) for name, code in (("ends", "Q"), ("sizes", "Q")))
    if "pack_ids" in sections:
        out["pack_ids"], out["pack_offsets"] = _array("I", sections["pack_ids"]), _array("Q", sections["pack_offsets"])
    return out


def _build(header: dict, columns: dict, count: int, digest: str, suspects: list[int] | None) -> Manifest:
    """The Manifest over checked columns; `suspects` (None: the paths were checked when this copy was
    written) lists the entries whose successor starts with their path, for the file/directory check."""
    paths, ends, sizes = columns["paths"], columns["ends"], columns["sizes"]
    digests, executable = columns["digests"], columns["executable"]
    if not (len(ends) == count + 1 and len(sizes) == count and len(digests) == 16 * count
            and len(executable) == count):
        raise ValueError("columns of different lengths")
    if not all(isinstance(p, str) and is_digest(p) for p in header["packs"]):
        raise ValueError("the pack table holds something other than digests")
    if not _below_max_size(sizes) or ("pack_offsets" in columns and not _below_max_size(columns["pack_offsets"])):
        raise ValueError("sizes or pack offsets out of range")
    table = [None, *header["packs"]]
    packs = PackColumns.none(count)
    packs.table = table
    packs._index = {(p or "").encode(): i for i, p in enumerate(table)}
    if "pack_ids" in columns:
        packs.ids, packs.offsets = columns["pack_ids"], columns["pack_offsets"]
        if len(packs.ids) != count or len(packs.offsets) != count or (count and max(packs.ids) >= len(table)):
            raise ValueError("pack columns do not match the entries")
    extras = {int(i): _extra(e) for i, e in header["extras"].items()}
    if any(not 0 <= i < count for i in extras):
        raise ValueError("extras for entries that do not exist")
    m = Manifest(check_chunk_size(header["chunk_size"]), paths, ends, sizes, digests, executable, extras, packs)
    specials = [i for i, e in extras.items() if "kind" in e]
    if any(sizes[i] or executable[i] for i in specials):
        raise ValueError("a directory or link entry with a size or mode")
    m.specials = len(specials)
    if suspects is not None:
        m._check_tree(suspects)
    m._digest = digest
    return m


_BELOW_0X20 = bytes(range(0x20))


def _below_max_size(a: array) -> bool:
    """Every value of a u64 array is at most MAX_SIZE (2**53 - 1), checked with C-level passes over
    its bytes (a loop over a million values costs 40 ms): the top byte of each is 0, the next < 0x20."""
    if not _LITTLE or MAX_SIZE != 2**53 - 1:
        return not a or max(a) <= MAX_SIZE
    raw = a.tobytes()
    return raw[7::8].count(0) == len(a) and not raw[6::8].translate(None, _BELOW_0X20)


def _extra(e: dict) -> dict:
    """An entry's rare fields, as the JSON parse would give them (chunks as a tuple of digests)."""
    for key, value in e.items():
        if key == "chunks":
            if not (isinstance(value, list) and all(isinstance(c, str) and is_digest(c) for c in value)):
                raise ValueError("chunks are not a list of digests")
            e[key] = tuple(value)
        elif key == "kind":
            if value not in (DIR, LINK) or not e.get("no_digest") or (value == LINK) != ("target" in e):
                raise ValueError(f"an entry of kind {value!r:.20} is malformed")
        elif key == "target":
            check_link_target(value, "?")
        elif key == "blocks":
            if not (isinstance(value, str) and is_digest(value) and "chunks" in e and "ref" not in e):
                raise ValueError("an invalid block list")
        elif not (key in _TEXT_FIELDS and isinstance(value, str) or key == "no_digest" and value is True):
            raise ValueError(f"unknown entry field {key!r}")
    return e


def _check_paths(blob: bytes, ends: array) -> list[int]:
    """Sorted, unique, UTF-8 and normalized, as parsing the JSON would have enforced: ValueError if not.
    Returns the entries whose successor starts with their path (for Manifest._check_tree)."""
    paths = [blob[a:b] for a, b in zip(ends, ends[1:], strict=False)]
    if not paths:
        return []
    if b"\n" not in blob and b"\x00" not in blob and min(map(len, paths)):
        suspects = checked_plain_paths(paths)
        if suspects is not None:
            return suspects
    _check_each(paths, None)  # rare names (newlines), or something is wrong: one path at a time, saying what
    return list(itertools.compress(range(len(paths) - 1), map(bytes.startswith, paths[1:], paths)))
