"""Manifest entries and what is checked of each: a file (content digest, size, chunk digests, pack
location, or an external reference), an empty directory or a symbolic link (format 2)."""

import json
from dataclasses import dataclass

from ..errors import CorruptData, InvalidPath
from ..hashing import digest_bytes, is_digest

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


def check_chunk_size(value, where: str = "manifest") -> int:
    """A chunk size from the store (a manifest header's, a draft's), if it is one a reader can work
    with; CorruptData naming `where` if not."""
    if type(value) is not int or not MIN_CHUNK_SIZE <= value <= MAX_CHUNK_SIZE:
        raise CorruptData(f"{where} chunk_size {value!r:.40} is not a whole number from {MIN_CHUNK_SIZE} "
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
    blocks: str | None = None  # digest of the blob's block list (blocks.py): only with `chunks`

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
            special: dict = {"kind": self.kind, "path": self.path, "size": 0}
            if self.target is not None:
                special["target"] = self.target
            return special
        obj: dict = {"path": self.path, "size": self.size}
        if self.digest is not None:
            obj["digest"] = self.digest
        if self.pack is not None:
            obj["pack"] = self.pack
            obj["offset"] = self.offset
        if self.chunks:
            obj["chunks"] = list(self.chunks)
        if self.blocks is not None:
            obj["blocks"] = self.blocks
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
            blocks = obj.get("blocks")
            if blocks is not None and not (isinstance(blocks, str) and is_digest(blocks) and chunks
                                           and obj.get("ref") is None):
                raise CorruptData(f"manifest entry {path!r} has an invalid block list ({blocks!r:.40})")
            return cls(path, size, digest, chunks, obj.get("ref"), obj.get("etag"), obj.get("version_id"),
                       obj.get("mode") == EXECUTABLE_MODE, pack, offset, blocks=blocks)
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


def parent_dirs(paths) -> set[str]:
    """Every directory above the entry paths `paths` ("a/b/c" -> "a/b", "a"): where an empty directory
    entry yields to the entries below it."""
    return {p.rsplit("/", i)[0] for p in paths for i in range(1, p.count("/") + 1)}


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
