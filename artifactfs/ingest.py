"""Turning local files into entries: walk a directory safely, hash, and upload what the store lacks.

Hashing and uploading run in one pool, file by file, so the disk, the CPU and the network overlap.
"""

import os
import stat
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from . import blocks, layout
from .errors import InvalidPath, LocalIOError
from .hashing import CHUNK_SIZE, hash_bytes, hash_file
from .manifest import Entry
from .packs import PACK_FILE_MAX, Packer, Slot
from .paths import join_entry_path, normalize_entry_path
from .store import ObjectStore

THREADS = 16
SMALL_FILE = 64 * 1024 * 1024  # read whole into memory up to this size


@dataclass(frozen=True)
class LocalFile:
    path: str  # entry path in the artifact
    source: str  # local file
    executable: bool = False


def walk_directory(root: str, prefix: str | None = None, tree: list[Entry] | None = None) -> list[LocalFile]:
    """Every regular file under `root`, as entries under `prefix`.

    With `tree` (a commit), symbolic links and empty directories are appended to it as entries of
    their own: a link is stored as written, whatever it points at, and never followed. Without it
    (a file:// reference), a link is followed only when it resolves inside `root`. A device, FIFO or
    socket, a link leaving `root` (without `tree`) or a name that is not UTF-8 is an error naming it.
    """
    root = os.path.abspath(root)
    if not os.path.isdir(root):
        raise LocalIOError(f"{root} is not a directory")
    real_root = os.path.realpath(root)
    files: list[LocalFile] = []

    def fail(exc: OSError) -> None:
        raise LocalIOError(f"cannot read {exc.filename}: {exc.strerror}")

    def entry_path(full: str) -> str:
        rel = os.path.relpath(full, root)
        try:
            rel.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidPath(f"file name {os.fsencode(rel)!r} is not valid UTF-8") from None
        return join_entry_path(prefix, rel.replace(os.sep, "/"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=fail, followlinks=False):
        links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        if tree is not None:  # links become entries of their own, never followed
            filenames = _record_tree(dirpath, dirnames, filenames, links, dirpath == root, entry_path, tree)
            links = []
        for name in links:  # a symlinked directory: follow only inside root
            _check_inside(os.path.join(dirpath, name), real_root)
        for name in filenames + links:
            full = os.path.join(dirpath, name)
            files.extend(_files_at(full, entry_path(full), real_root))
    return files


def walk_tree(root: str, prefix: str | None = None) -> tuple[list[LocalFile], list[Entry]]:
    """A directory as a version holds it: its regular files, and its symbolic links and empty
    directories as entries of their own (links stored as written, never followed). Every write path
    that takes a directory walks it here (commit --dir, Artifact.add_dir, draft add --dir,
    artifactfs:// put), so they all keep the same tree."""
    tree: list[Entry] = []
    files = walk_directory(root, prefix, tree)
    return files, tree


def _record_tree(dirpath: str, dirnames: list[str], filenames: list[str], links: list[str], is_root: bool,
                 entry_path, tree: list[Entry]) -> list[str]:
    """Append an empty directory's entry and the links of one directory to `tree`; the regular names left."""
    if not dirnames and not filenames and not is_root:
        tree.append(Entry.directory(entry_path(dirpath)))
    for name in links + [f for f in filenames if os.path.islink(os.path.join(dirpath, f))]:
        full = os.path.join(dirpath, name)
        tree.append(Entry.link(entry_path(full), _read_link(full)))
    return [f for f in filenames if not os.path.islink(os.path.join(dirpath, f))]


def _files_at(full: str, path: str, real_root: str) -> list[LocalFile]:
    """The file at `full` (or, for a followed link to a directory, the files below it)."""
    if os.path.islink(full):
        _check_inside(full, real_root)
    try:
        st = os.stat(full)
    except OSError as exc:
        raise LocalIOError(f"cannot read {full}: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        return walk_directory(full, path)
    if not stat.S_ISREG(st.st_mode):
        raise LocalIOError(f"{full} is not a regular file (devices, FIFOs and sockets cannot be committed)")
    return [LocalFile(path, full, bool(st.st_mode & stat.S_IXUSR))]


def _read_link(full: str) -> str:
    try:
        return os.readlink(full)
    except OSError as exc:
        raise LocalIOError(f"cannot read {full}: {exc.strerror}") from None


def _check_inside(path: str, real_root: str) -> None:
    target = os.path.realpath(path)
    if target != real_root and not target.startswith(real_root + os.sep):
        raise InvalidPath(f"{path} is a symlink to {target}, outside the committed directory")


def local_file(source: str, name: str | None = None) -> LocalFile:
    """One file added under `name` (default: its base name)."""
    try:
        st = os.stat(source)
    except OSError as exc:
        raise LocalIOError(f"cannot read {source}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise LocalIOError(f"{source} is not a regular file")
    return LocalFile(normalize_entry_path(name or os.path.basename(source)), source, bool(st.st_mode & stat.S_IXUSR))


Location = tuple  # (pack or None, offset): where the store already holds some content (Manifest.location)


def hash_and_upload(store: ObjectStore, files: Iterable[LocalFile], chunk_size: int = CHUNK_SIZE,
                    progress: Callable[[int], None] | None = None, threads: int = THREADS,
                    known: Callable[[str], Location | None] = lambda digest: None,
                    known_blocks: Callable[[str], str | None] = lambda digest: None) -> tuple[list[Entry], int]:
    """Hash each file and upload what the store lacks: files up to PACK_FILE_MAX into packs, bigger
    ones as their own blob unless the store has it, with its block list (blocks.py) when it has
    several chunks. Returns (entries in `files` order, bytes uploaded).

    `known(digest)` gives where a live version already stores that content, which saves one existence
    check per unchanged big file and keeps an unchanged small file in its pack; `known_blocks(digest)`
    the block list it names (kept without a request).
    """
    return _Upload(store, chunk_size, progress, known, known_blocks).run(list(files), threads)


class _Upload:
    """One hash_and_upload call: files hashed on a thread pool, in path order so packs hold directory
    neighbours; each content placed once (the same content twice in one commit is uploaded once)."""

    def __init__(self, store: ObjectStore, chunk_size: int, progress, known, known_blocks):
        self.store, self.chunk_size, self.progress, self.known = store, chunk_size, progress, known
        self.known_blocks = known_blocks
        self.blocks: dict[str, str | None] = {}  # digest of a blob of several chunks -> its block list
        self.listing_pool = ThreadPoolExecutor(2, thread_name_prefix="block-lists")
        self.placed: dict[str, tuple[threading.Event, list]] = {}  # digest -> (done, [location]) of its first file
        self.lock = threading.Lock()
        self.uploaded = 0
        self.packer = Packer(store)

    def run(self, files: list[LocalFile], threads: int) -> tuple[list[Entry], int]:
        order = sorted(range(len(files)), key=lambda i: files[i].path.encode("utf-8"))
        batches = _batches([(seq, files[i]) for seq, i in enumerate(order)], threads)
        with ThreadPoolExecutor(max(1, min(threads, len(batches)))) as pool, self.listing_pool:
            in_order = [r for batch in pool.map(lambda b: [self.one(*item) for item in b], batches) for r in batch]
        results: list = [None] * len(files)
        for seq, i in enumerate(order):
            results[i] = in_order[seq]
        self.packer.finish()
        entries = []
        for f, (size, digest, chunks, where) in zip(files, results, strict=True):
            if not where:
                raise LocalIOError(f"{f.source} could not be uploaded")  # its first copy failed: reported there
            loc = where[0]
            pack, offset = (loc.pack, loc.offset) if isinstance(loc, Slot) else loc
            entries.append(Entry(f.path, size, digest, tuple(chunks) if chunks else None, executable=f.executable,
                                 pack=pack, offset=offset, blocks=self.blocks.get(digest) if chunks else None))
        return entries, self.uploaded + self.packer.uploaded_bytes

    def one(self, seq: int, f: LocalFile) -> tuple[int, str, list | None, list]:
        before, packable, data, size, digest, chunks = self._hash(seq, f)
        with self.lock:
            first = digest not in self.placed
            if first:
                self.placed[digest] = (threading.Event(), [])
            done, where = self.placed[digest]
        if first:
            try:
                listing = None
                if chunks and not packable:  # random reads of it fetch 64 KiB blocks, not chunks: its
                    # block list is made beside the upload (a second read of the file, from the page cache)
                    listing = self.listing_pool.submit(blocks.list_for, self.store, digest,
                                                       f.source if data is None else data, self.known_blocks(digest))
                where.append(self._place(seq, f, before, packable, data, size, digest))
                if listing is not None:
                    listed = listing.result()
                    with self.lock:
                        self.blocks[digest] = listed
            finally:
                done.set()
        else:
            if packable:
                self.packer.skip(seq)
            done.wait()
        if self.progress:
            self.progress(size)
        return size, digest, chunks, where

    def _hash(self, seq: int, f: LocalFile):
        try:
            before = os.stat(f.source)
            # decided once, by the size seen first, so each file is added to or skipped by the packer once
            packable = 0 < before.st_size <= PACK_FILE_MAX
            if not packable:
                self.packer.skip(seq)  # at once: files behind it need not wait for its hashing
            if before.st_size <= SMALL_FILE:  # read once: the bytes hashed are the bytes uploaded
                with open(f.source, "rb") as fh:
                    data = fh.read()
                size, digest, chunks = hash_bytes(data, self.chunk_size)
            else:
                data = None
                size, digest, chunks = hash_file(f.source, self.chunk_size)
        except OSError as exc:
            raise LocalIOError(f"cannot read {f.source}: {exc.strerror}") from None
        return before, packable, data, size, digest, chunks

    def _place(self, seq: int, f: LocalFile, before, packable: bool, data, size: int, digest: str):
        location = self.known(digest)
        if location is not None:
            if packable:
                self.packer.skip(seq)
            return location
        if packable:
            if size == before.st_size:
                return self.packer.add(seq, data)  # a Slot: placed by packer.finish() at the latest
            self.packer.skip(seq)  # it changed size since stat: uploaded as a blob, never out of sequence
        key = layout.blob_key(digest)
        if not self.store.exists(key):
            if data is not None:
                self.store.put(key, data)
            else:
                self.store.put_file(key, f.source, size, digest)  # refused unless the bytes sent are the ones hashed
            with self.lock:
                self.uploaded += size
        return None, 0


def _batches(files: list, threads: int, per_batch: int = 16) -> list[list]:
    """Runs of consecutive files, one run per task: a task per small file costs the pool more than
    hashing it. Runs stay short enough that every thread gets several."""
    per_batch = max(1, min(per_batch, len(files) // (4 * threads)))
    batches: list[list] = []
    for f in files:
        if not batches or len(batches[-1]) >= per_batch:
            batches.append([])
        batches[-1].append(f)
    return batches

