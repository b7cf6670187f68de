"""The columnar form of a manifest: the parsed columns of a Manifest, ready to load without parsing.

The canonical manifest (JSON Lines, see docs/FORMAT.md) stays the one source of truth; this form is
derived from it, stored beside it (`manifests/<xx>/<digest>.columns`) and in the local manifest cache,
so that a mount or a CLI command loads a version of a million entries in a fraction of the time the
JSON parse takes. Anything wrong with it (missing, damaged, an unknown layout) only means the JSON is
parsed instead.

Layout: zlib( header line (JSON) + sections ) + 16-byte xxh3-128 of the compressed bytes. The header
names the manifest digest, the chunk size, the entry count, the pack table, the extras (references,
chunk lists: rare) and the byte length of each section; the sections are the columns in little-endian
order: paths (concatenated UTF-8), path ends (u64), sizes (u64), digests (16 bytes each), executable
flags (1 byte each) and, when some entry is packed, pack ids (u32, 0 = not packed) and pack offsets (u64).

Decoding checks what a reader relies on: the checksum, the section lengths, that paths are sorted,
unique and normalized (no traversal can come in this way), and pack ids within the table.
"""

import itertools
import json
import operator
import sys
import zlib
from array import array

import xxhash

from ..errors import CorruptData, InvalidPath
from ..hashing import is_digest
from ..paths import normalize_entry_path
from .columns import PackColumns
from .entry import DIR, LINK, MAX_SIZE, check_chunk_size, check_link_target
from .records import checked_plain_paths
from .table import Manifest

MAGIC = "artifactfs-manifest-columns"
LAYOUT_VERSION = 1
_CHECKSUM = 16
_TEXT_FIELDS = ("ref", "etag", "version_id")
_LITTLE = sys.byteorder == "little"


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


def encode(m: Manifest) -> bytes:
    packs = m._packs
    sections = [("paths", m._paths.blob), ("ends", _le(m._paths.offsets)), ("sizes", _le(m._sizes)),
                ("digests", m._digests), ("executable", m._executable)]
    if packs.ids is not None and packs.offsets is not None:
        sections += [("pack_ids", _le(packs.ids)), ("pack_offsets", _le(packs.offsets))]
    header = {"type": MAGIC, "layout": LAYOUT_VERSION, "manifest": m.digest, "chunk_size": m.chunk_size,
              "count": len(m), "packs": packs.table[1:], "extras": {str(i): e for i, e in m._extras.items()},
              "sections": [[name, len(data)] for name, data in sections]}
    body = zlib.compress(json.dumps(header, separators=(",", ":")).encode() + b"\n"
                         + b"".join(data for _, data in sections), 1)
    return body + xxhash.xxh3_128_digest(body)


def decode(data: bytes, digest: str, checked: bool = False) -> Manifest:
    """The Manifest whose canonical digest is `digest`; CorruptData if `data` is not a sound columnar
    form of it (the caller then parses the JSON manifest instead). `checked`: the paths were checked
    before this copy was written (the local cache holds only forms this user's reads checked), so only
    the checksum and the column lengths are."""
    body, checksum = data[:-_CHECKSUM], data[-_CHECKSUM:]
    if len(data) <= _CHECKSUM or xxhash.xxh3_128_digest(body) != checksum:
        raise CorruptData(f"columnar manifest {digest}: checksum mismatch")
    try:
        raw = zlib.decompress(body)
        head_end = raw.index(b"\n")
        header = json.loads(raw[:head_end])
        if header.get("type") != MAGIC or header.get("layout") != LAYOUT_VERSION:
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
        return _build(header, columns, count, digest, checked)
    except (ValueError, KeyError, TypeError, InvalidPath, zlib.error) as exc:
        raise CorruptData(f"columnar manifest {digest}: {exc}") from None


def _columns(sections: dict) -> dict:
    """Each section as the type Manifest holds it: bytes, or an array."""
    out: dict[str, bytes | array] = {name: bytes(sections[name]) for name in ("paths", "digests", "executable")}
    out.update((name, _array(code, sections[name])) for name, code in (("ends", "Q"), ("sizes", "Q")))
    if "pack_ids" in sections:
        out["pack_ids"], out["pack_offsets"] = _array("I", sections["pack_ids"]), _array("Q", sections["pack_offsets"])
    return out


def _build(header: dict, columns: dict, count: int, digest: str, checked: bool) -> Manifest:
    paths, ends, sizes = columns["paths"], columns["ends"], columns["sizes"]
    digests, executable = columns["digests"], columns["executable"]
    if not (len(ends) == count + 1 and ends[0] == 0 and ends[-1] == len(paths) and len(sizes) == count
            and len(digests) == 16 * count and len(executable) == count):
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
    if not checked:
        m._check_tree(_check_paths(paths, ends))
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
    # rare names (newlines), or something is wrong: one path at a time, saying what
    try:
        texts = [p.decode("utf-8") for p in paths]
    except UnicodeDecodeError:
        raise ValueError("paths are not UTF-8") from None
    if not all(map(operator.lt, paths, paths[1:])):
        raise ValueError("paths are not sorted and unique")
    for path in texts:
        if normalize_entry_path(path) != path:
            raise ValueError(f"path {path!r} is not normalized")
    return list(itertools.compress(range(len(paths) - 1), map(bytes.startswith, paths[1:], paths)))
