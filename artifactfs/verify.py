"""`verify`: re-hash every manifest, blob (whole and per chunk), pack member and reference source
that the given versions name, straight from the store (never the local cache)."""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from . import blocks, layout
from .errors import CorruptData, ObjectNotFound
from .hashing import READ_BLOCK, StreamHasher, digest_bytes
from .manifest import Manifest, check_entry, columnar
from .records import VersionRecord, parse_stored_manifest
from .repo import Repository

VERIFY_THREADS = 8


@dataclass
class VerifyReport:
    versions: int
    blobs: int
    references: int
    problems: list[str]


@dataclass
class _Work:
    """What the versions store, each content once: blob digest -> (size, chunks, chunk size, where),
    pack -> {(offset, size, digest): where}, and the references."""
    blobs: dict = field(default_factory=dict)
    packs: dict = field(default_factory=dict)
    refs: list = field(default_factory=list)


def load_manifest_from_store(repo: Repository, digest: str) -> Manifest:
    """The manifest straight from the store (never the local copy), checked against its digest."""
    data = repo.manifest_bytes_from_store(digest)
    return parse_stored_manifest(data, digest)


def columns_problem(repo: Repository, manifest: Manifest) -> str | None:
    """What is wrong with the stored columnar form of a manifest, if anything: readers load it instead
    of the JSON, so it must hold exactly the manifest's entries (a missing one is fine: older commits)."""
    try:
        data, _ = repo.store.get(layout.manifest_columns_key(manifest.digest))
    except ObjectNotFound:
        return None
    try:
        columns = columnar.decode(data, manifest.digest)
    except CorruptData as exc:
        return str(exc)
    if columns.to_bytes() != manifest.to_bytes():
        return f"columnar manifest {manifest.digest} does not hold the manifest's entries"
    return None


def verify(repo: Repository, records: list[VersionRecord], references) -> VerifyReport:
    """Check every object the versions name; each problem is one line naming the version and path."""
    problems: list[str] = []
    work = _Work()
    for record in records:
        _collect(repo, record, work, problems)
    checks = [(lambda item: _check_blob(repo, item), sorted(work.blobs.items())),
              (lambda item: _check_pack(repo, item), sorted(work.packs.items())),
              (lambda item: _check_ref(references, item), work.refs)]
    with ThreadPoolExecutor(VERIFY_THREADS) as pool:
        for check, items in checks:
            for found in pool.map(check, items):
                problems.extend(found)
    contents = set(work.blobs).union(*({d for _, _, d in members} for members in work.packs.values()))
    return VerifyReport(len(records), len(contents), len(work.refs), problems)  # distinct contents checked


def _collect(repo: Repository, record: VersionRecord, work: _Work, problems: list[str]) -> None:
    try:
        manifest = load_manifest_from_store(repo, record.manifest)
    except ObjectNotFound:
        problems.append(f"{record.ref}: manifest {record.manifest} is missing")
        return
    except Exception as exc:
        problems.append(f"{record.ref}: {exc}")
        return
    problem = columns_problem(repo, manifest)
    if problem:
        problems.append(f"{record.ref}: {problem}")
    for entry in manifest:
        where = f"{record.ref} {entry.path}"
        try:
            check_entry(entry, manifest.chunk_size)
        except CorruptData as exc:
            problems.append(f"{where}: {exc}")
            continue
        if entry.ref is not None:
            work.refs.append((where, entry, manifest.chunk_size))
        elif entry.pack:
            work.packs.setdefault(entry.pack, {})[(entry.offset, entry.size, entry.digest)] = where
        elif entry.size:
            work.blobs.setdefault(entry.digest, (entry.size, entry.chunks, manifest.chunk_size, where, entry.blocks))


def _check_blob(repo: Repository, item) -> list[str]:
    digest, (size, chunks, chunk_size, where, listed) = item
    key = layout.blob_key(digest)
    try:
        actual = repo.store.head(key).size
    except ObjectNotFound:
        return [f"{where}: blob {digest} is missing"]
    if actual != size:
        return [f"{where}: blob {digest} is {actual} bytes, expected {size}"]
    hasher = StreamHasher(chunk_size)
    block_list = []
    for start in range(0, size, READ_BLOCK):
        data = repo.store.get_range(key, start, min(READ_BLOCK, size - start))
        hasher.update(data)
        if listed:
            block_list.append(blocks.of_bytes(data))  # READ_BLOCK is a multiple of the block size
    _, got, got_chunks = hasher.finish()
    out = []
    if listed:
        try:
            stored, _ = repo.store.get(layout.blocks_key(listed))
        except ObjectNotFound:
            stored = None
        if stored != b"".join(block_list):
            out.append(f"{where}: block list {listed} of blob {digest} is {'missing' if stored is None else 'damaged'}"
                       " (random reads of it fall back to whole chunks)")
    if got != digest:
        out.append(f"{where}: blob {digest} content does not match its digest")
    if chunks and tuple(got_chunks or ()) != tuple(chunks):
        bad = [i for i, (a, b) in enumerate(zip(chunks, got_chunks or (), strict=False)) if a != b]
        out.append(f"{where}: blob {digest} chunk(s) {bad} do not match their digests")
    return out


def _check_pack(repo: Repository, item) -> list[str]:
    pack, members = item
    try:
        data, _ = repo.store.get(layout.pack_key(pack))
    except ObjectNotFound:
        return [f"{where}: pack {pack} is missing" for where in sorted(members.values())[:1]]
    out = []  # members only: a pack restore_pack rebuilt no longer hashes to its name
    for (offset, size, digest), where in sorted(members.items()):
        if digest_bytes(data[offset:offset + size]) != digest:
            out.append(f"{where}: bytes {offset}+{size} of pack {pack} do not match its digest {digest}")
    return out


def _check_ref(references, item) -> list[str]:
    where, entry, chunk_size = item
    problem = references.check(entry, chunk_size)
    return [f"{where}: {problem}"] if problem else []
