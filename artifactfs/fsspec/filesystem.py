"""ArtifactFileSystem: the fsspec filesystem `artifactfs://` (docs/PYTHON_API.md).

Listings and `info` come from the store's records and the version's manifest, never from listing the
store's objects; reads go through the same verified piece cache as the mount and `get` (and, for
shuffled readers of small files, the mount's pack policy: pack_share.py). An alias is
resolved when a path naming it is opened or listed, and the answer is kept `alias_ttl` seconds (the
mount's default, 2 s); a version, once loaded, is kept (versions are immutable).

Writes (`put`, `pipe_file`, `open(..., "wb")`, `rm`) go to `NAME` or `NAME:latest/...` and commit the
latest version plus the change as the next one (update.py); inside `with fs.transaction:` everything
written to one artifact becomes ONE version when the block ends, nothing if it raises.

Fork and pickle safety: an instance holds no client until it is used, makes a new one in a forked
child (os.register_at_fork), and pickles as its arguments (fsspec), so DataLoader workers, Dask and
Ray get their own connections, threads and locks.
"""

import contextlib
import dataclasses
import errno
import math
import os
import threading
import time
import weakref
from collections.abc import Callable
from glob import has_magic
from typing import Any

from fsspec import AbstractFileSystem
from fsspec.callbacks import DEFAULT_CALLBACK
from fsspec.spec import AbstractBufferedFile

from ..cache_writer import CacheWriter
from ..client import Client
from ..config import load_settings
from ..entry_file import EntryReader
from ..errors import (
    AlreadyExists,
    ArtifactfsError,
    CorruptData,
    InvalidName,
    InvalidPath,
    NotFound,
    PermissionDenied,
    UsageError,
)
from ..fetch import Piece, pieces_of
from ..hashing import READ_BLOCK
from ..ingest import walk_tree
from ..lru import LRU
from ..manifest import DIR, LINK, Entry
from ..manifest_store import VersionView
from ..names import LATEST, ArtifactName, Ref, check_name
from ..pack_share import PackShare
from ..references import is_unchecked
from .paths import Location, parse_path
from .writes import VersionTransaction, WriteFile, commit_changes, write_target

OPTIONS = ("store", "endpoint_url", "cache_dir", "cache_size", "timeout", "alias_ttl", "artifact_type")
# what fsspec's own base class takes
FSSPEC_OPTIONS = {"skip_instance_cache", "use_listings_cache", "listings_expiry_time", "max_paths", "asynchronous",
                  "loop"}
VERSION_LRU = 16
PIECES_LRU = 256  # entries whose piece lists (checked against the manifest) are kept: a 4 GiB file has 4,096
# live instances by id (fsspec hashes an instance by a token set after __init__): reset after a fork
_instances: "weakref.WeakValueDictionary[int, ArtifactFileSystem]" = weakref.WeakValueDictionary()


@contextlib.contextmanager
def os_errors(path: str):
    """artifactfs errors as the OSErrors fsspec callers expect, the path named."""
    try:
        yield
    except AlreadyExists as exc:
        raise FileExistsError(errno.EEXIST, str(exc), path) from None
    except (NotFound, InvalidName, InvalidPath) as exc:
        raise FileNotFoundError(errno.ENOENT, str(exc), path) from None
    except PermissionDenied as exc:
        raise PermissionError(errno.EACCES, str(exc), path) from None
    except CorruptData as exc:
        raise OSError(errno.EIO, str(exc), path) from None
    except UsageError as exc:
        raise ValueError(str(exc)) from None
    except ArtifactfsError as exc:  # the store unreachable or timing out, a conflict, local I/O
        raise OSError(errno.EIO, str(exc), path) from None


class ArtifactFileSystem(AbstractFileSystem):
    protocol = "artifactfs"
    root_marker = ""
    transaction_type = VersionTransaction

    def __init__(self, store: str | None = None, endpoint_url: str | None = None, cache_dir: str | None = None,
                 cache_size: str | int | None = None, timeout: float | None = None, alias_ttl: float = 2.0,
                 artifact_type: str = "dataset", **kwargs):
        unknown = sorted(set(kwargs) - FSSPEC_OPTIONS)
        if unknown:
            raise ValueError(f"artifactfs:// has no storage option {unknown[0]!r}; its options are "
                             f"{', '.join(OPTIONS)}")
        super().__init__(**kwargs)
        with os_errors(""):
            self.settings = load_settings(option_name=lambda key: f"storage option {key!r}", store=store,
                                          endpoint_url=endpoint_url, cache_dir=cache_dir, cache_size=cache_size,
                                          timeout=timeout)
        try:
            self.artifact_type = check_name(artifact_type, "storage option 'artifact_type'")  # what a write creates
        except InvalidName as exc:
            raise ValueError(str(exc)) from None
        if type(alias_ttl) not in (int, float) or not 0 <= alias_ttl < math.inf:
            raise ValueError(f"storage option 'alias_ttl' must be seconds, 0 or more, not {alias_ttl!r}")
        self.alias_ttl = float(alias_ttl)
        self._reset()
        self._forked_in_transaction = False
        _instances[id(self)] = self

    def _reset(self) -> None:
        """Forget clients, threads and locks (at creation, and in a forked child)."""
        self._client: Client | None = None
        self._lock = threading.Lock()
        self._aliases: dict[tuple, tuple[float | None, int]] = {}  # None: for good
        self._versions = LRU(VERSION_LRU)  # (artifact, number) -> VersionView
        self._pieces = LRU(PIECES_LRU)  # (version key, entry index) -> pieces
        self._pack_share = PackShare()

    @property
    def client(self) -> Client:
        with self._lock:
            if self._client is None:
                self._client = Client(self.settings)
                # verified pieces go to the disk cache behind the read, not before it returns
                self._client.fetcher.cache_writer = CacheWriter(self._client.cache)
            return self._client

    # ---- resolving ---------------------------------------------------------------------------
    def _version(self, loc: Location) -> VersionView:
        artifact = loc.artifact
        number = loc.version
        if loc.travel is not None:
            number = self._travel(loc.travel)
        elif number is None:
            number = self._alias(artifact, loc.alias or LATEST)

        def load() -> VersionView:
            repo = self.client.repo
            record = repo.version(artifact, number)
            return VersionView(record, repo.manifest(record.manifest))

        return self._remembered(self._versions, (artifact, number), load)

    def _remembered(self, table: LRU, key: tuple, make: Callable[[], Any]) -> Any:
        """`table[key]`, made by `make()` (outside the lock) if absent."""
        with self._lock:
            held = table.get(key)
        if held is not None:
            return held
        made = make()
        with self._lock:
            return table.put(key, made)

    def _alias(self, artifact: ArtifactName, alias: str) -> int:
        return self._number((artifact, alias), False, lambda: self.client.repo.alias_target(artifact, alias)[0])

    def _travel(self, ref: Ref) -> int:
        """A past position's version: for good once its time is settled, else kept alias_ttl seconds."""
        return self._number(("travel", ref), ref.fixed, lambda: self.client.repo.travel(ref))

    def _number(self, key: tuple, fixed: bool, resolve: Callable[[], int]) -> int:
        """The version number `resolve()` gives, kept alias_ttl seconds (for good when `fixed`)."""
        now = time.monotonic()
        hit = self._aliases.get(key)
        if hit is not None and (hit[0] is None or hit[0] > now):
            return hit[1]
        number = resolve()
        self._aliases[key] = (None if fixed else now + self.alias_ttl, number)
        return number

    def _entry(self, path: str) -> tuple[VersionView, Entry, int]:
        """The file `path` names (links within the version followed); FileNotFoundError otherwise."""
        loc = parse_path(self._strip_protocol(path))
        if loc.depth < 4 or not loc.inner:
            raise IsADirectoryError(errno.EISDIR, "a directory, not a file", path)
        view = self._version(loc)
        inner = _resolve(view, loc.inner, follow_last=True)
        i = view.manifest.find(inner)
        if i is not None and (entry := view.manifest[i]).kind != DIR:
            return view, entry, i
        if i is not None or view.manifest.is_dir(inner):
            raise IsADirectoryError(errno.EISDIR, "a directory, not a file", path)
        raise NotFound(f"{view.record.ref} has no entry {loc.inner!r}")

    # ---- listing -----------------------------------------------------------------------------
    def ls(self, path, detail=True, **kwargs):
        path = self._strip_protocol(path)
        with os_errors(path):
            rows = self._list(parse_path(path), path)
        return rows if detail else [r["name"] for r in rows]

    def _list(self, loc: Location, path: str) -> list[dict]:
        repo = self.client.repo
        if loc.depth < 3:
            if loc.depth == 0:
                names = repo.list_entities()
            elif loc.depth == 1:
                names = repo.list_projects(*loc.parts)
            else:
                names = [a.name for a in repo.list_artifacts(*loc.parts)]
            if not names and loc.depth:
                raise NotFound(f"{path} does not exist")
            return [_dir(loc.child(n)) for n in names]
        if loc.depth == 3:
            return self._selectors(loc)
        view = self._version(loc)
        m = view.manifest
        inner = _resolve(view, loc.inner, follow_last=True) if loc.inner else ""
        found = m.find(inner) if inner else None
        if found is not None and m[found].kind != DIR:
            return [self._info(loc, path)]
        if inner and found is None and not m.is_dir(inner):
            raise NotFound(f"{view.record.ref} has no entry or directory {loc.inner!r}")
        rows = []
        for child in m.children(inner):
            name = loc.child(child.name)
            rows.append(_dir(name) if child.is_dir else _file_info(name, m[child.index], view,
                                                                   f"{inner}/{child.name}".lstrip("/")))
        return rows

    def _selectors(self, loc: Location) -> list[dict]:
        repo, artifact = self.client.repo, loc.artifact
        repo.artifact_info(artifact)  # NotFound for an artifact that does not exist
        rows = [dict(_dir(loc.child(f"v{v}")), version=f"v{v}")
                for v in repo.live_version_numbers(artifact, {})]
        for alias, number in repo.aliases(artifact).items():
            rows.append(dict(_dir(loc.child(alias)), version=f"v{number}", alias=alias))
        return rows

    def info(self, path, **kwargs):
        path = self._strip_protocol(path)
        with os_errors(path):
            return self._info(parse_path(path), path)

    def _info(self, loc: Location, path: str) -> dict:
        if loc.depth < 4:
            if loc.depth == 3:
                self.client.repo.artifact_info(loc.artifact)
            elif loc.depth:
                self._list(loc, path)  # raises for what does not exist
            return _dir(path)
        view = self._version(loc)
        if not loc.inner:
            rec = view.record
            return dict(_dir(path), version=f"v{rec.version}", digest=rec.digest, created=rec.created_at,
                        files=rec.file_count, total_size=rec.size)  # size 0, as every directory's (du)
        inner = _resolve(view, loc.inner, follow_last=False)
        i = view.manifest.find(inner)
        if i is not None:
            return _file_info(path, view.manifest[i], view, inner)
        if view.manifest.is_dir(inner):
            return dict(_dir(path), version=f"v{view.record.version}")
        raise NotFound(f"{view.record.ref} has no entry or directory {loc.inner!r}")

    def flush_cache(self, timeout: float | None = None) -> bool:
        """Wait until the pieces read so far are written to the disk cache (they are written behind
        the reads that fetched them), e.g. before handing the cache to another process; False if
        `timeout` seconds passed first."""
        with self._lock:
            client = self._client
        return client is None or client.fetcher.cache_writer.flush(timeout)

    def checksum(self, path):
        """The entry's digest (xxh3-128 of its bytes, as the manifest records it)."""
        return self.info(path).get("digest") or super().checksum(path)

    def ukey(self, path):
        info = self.info(path)
        return f"{info.get('version')}:{info.get('digest')}:{self._strip_protocol(path)}"

    def created(self, path):
        """When the version that holds `path` was committed (a version is immutable: its files were
        made then, as the mount's mtimes say)."""
        from datetime import datetime

        loc = parse_path(self._strip_protocol(path))
        with os_errors(path):
            return datetime.fromisoformat(self._version(loc).record.created_at.replace("Z", "+00:00"))

    def modified(self, path):
        """The same as `created`: nothing in a version changes after its commit (duckdb, Arrow and
        caches key on it)."""
        return self.created(path)

    # ---- reading -----------------------------------------------------------------------------
    def _reader(self, path: str) -> EntryReader:
        return self._reader_and_info(path, info=False)[0]

    def _reader_and_info(self, path: str, info: bool = True) -> tuple[EntryReader, dict | None]:
        with os_errors(path):
            view, entry, index = self._entry(path)
            fetcher = self.client.fetcher
            on_miss = None
            if view.manifest.pack_at(index) is not None:  # a small file: shuffled readers fetch its pack
                def on_miss() -> None:
                    pieces = self._pack_share.on_cold_read(view.key, view.manifest, index)
                    if pieces:
                        fetcher.prefetch(pieces)
            reader = EntryReader(fetcher, entry, view.manifest.chunk_size, on_miss, self._pieces_of(view, entry, index))
            return reader, _file_info(self._strip_protocol(path), entry, view, entry.path) if info else None

    def _pieces_of(self, view: VersionView, entry: Entry, index: int) -> list[Piece] | None:
        """The pieces of a chunked file, built and checked once per instance rather than per read (a
        random 1 MiB read of a 4 GiB file would otherwise spend milliseconds on its 4,096 pieces)."""
        if not entry.chunks or is_unchecked(entry):
            return None
        return self._remembered(self._pieces, (view.key, index), lambda: pieces_of(entry, view.manifest.chunk_size))

    def _open(self, path, mode="rb", block_size=None, autocommit=True, cache_options=None, **kwargs):
        path = self._strip_protocol(path)
        if "r" in mode:
            reader, info = self._reader_and_info(path)
            return ArtifactFile(self, path, reader, info, block_size=block_size)
        self._check_write(path)
        with os_errors(path):
            target = write_target(parse_path(path), path, mode)
        if mode == "xb":
            self._refuse_existing(path)
        return WriteFile(self, target, path, autocommit, exclusive=mode == "xb")

    def cat_file(self, path, start=None, end=None, **kwargs):
        reader = self._reader(path)
        size = reader.size
        start = 0 if start is None else (max(size + start, 0) if start < 0 else start)
        end = size if end is None else (max(size + end, 0) if end < 0 else end)
        with os_errors(path):
            return reader.read(start, end)

    def get_file(self, rpath, lpath, callback=None, outfile=None, **kwargs):
        """Write the verified file at `lpath` (a temp file renamed into place: never half a file; its
        parent directories made); a link is made a link again, with the target it records (as
        `artifactfs get` does)."""
        info = self.info(rpath)
        if info["type"] == "directory":
            os.makedirs(lpath, exist_ok=True)
            return
        if outfile is None:
            os.makedirs(os.path.dirname(os.path.abspath(lpath)), exist_ok=True)
        if info.get("islink"):
            _make_link(info["destination"], lpath)
            return
        reader = self._reader(rpath)
        if outfile is not None:
            with os_errors(rpath):
                for at in range(0, reader.size, 8 * READ_BLOCK):
                    outfile.write(reader.read(at, at + 8 * READ_BLOCK))
            return
        tmp = f"{lpath}.artifactfs-{os.getpid()}-{threading.get_ident()}.tmp"
        try:
            with open(tmp, "wb") as f, os_errors(rpath):
                for at in range(0, reader.size, 8 * READ_BLOCK):
                    f.write(reader.read(at, at + 8 * READ_BLOCK))
                    if callback is not None:
                        callback.relative_update(min(8 * READ_BLOCK, reader.size - at))
            os.replace(tmp, lpath)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    # ---- writing -----------------------------------------------------------------------------
    # put, copy, mv and rm take fsspec's path rules (globs, lists, `recursive`, a trailing slash for
    # "into this directory"); each call is one version per artifact it writes (one transaction), and
    # inside `with fs.transaction:` part of that one.
    def _check_write(self, path: str) -> None:
        if self._forked_in_transaction and not self._intrans:
            raise OSError(errno.EPERM, "this process was forked inside its parent's `with fs.transaction:` "
                          "block, which only the parent commits: write from workers into one version with "
                          "a draft (Artifact.upsert, then finish_draft), or open a transaction here", path)

    @contextlib.contextmanager
    def _batch(self, path):
        """Everything written inside as one version per artifact: the open transaction's, or a new one."""
        self._check_write(path if isinstance(path, str) else "")
        if self._intrans:
            yield
        else:
            with self.transaction:
                yield

    def _destinations(self, paths):
        """_destination of a path, or of each of a list of them."""
        return [self._destination(p) for p in paths] if isinstance(paths, list) else self._destination(paths)

    def _destination(self, path: str) -> str:
        """A write destination as fsspec's rules take it: ENTITY/PROJECT/NAME is the root of the next
        version, a directory (so files go in it under their names)."""
        stripped = self._strip_protocol(path)
        with os_errors(stripped):
            if parse_path(stripped).depth == 3:
                return f"{stripped}:{LATEST}/"
        return stripped + "/" if str(path).endswith("/") else stripped  # the slash says "into"

    def put(self, lpath, rpath, recursive=False, callback=DEFAULT_CALLBACK, maxdepth=None, **kwargs):
        """Commit local files as the next version, by fsspec's rules: a file to `rpath` (into it, by its
        name, if `rpath` is a directory or ends with '/'), a directory's tree with recursive=True
        (under its name if `rpath` exists, its content if `lpath` ends with '/'), globs, lists.
        A directory's links and empty directories are kept, as `commit --dir` keeps them."""
        rpath = self._destinations(rpath)
        with self._batch(rpath):
            if isinstance(lpath, str) and isinstance(rpath, str) and recursive and maxdepth is None \
                    and not has_magic(lpath) and os.path.isdir(lpath):
                return self._put_tree(lpath, rpath)
            return super().put(lpath, rpath, recursive=recursive, callback=callback, maxdepth=maxdepth, **kwargs)

    def _put_tree(self, lpath: str, rpath: str) -> None:
        dest = rpath.rstrip("/")
        if not lpath.endswith("/") and (rpath.endswith("/") or self.isdir(rpath)):
            dest = f"{dest}/{os.path.basename(os.path.normpath(lpath))}"  # into it, under its name
        with os_errors(dest):
            target = write_target(parse_path(dest), dest, "wb")
            files, tree = walk_tree(lpath, target.inner or None)
        self.transaction.files.append(target.with_files(files, tree))

    def put_file(self, lpath, rpath, callback=None, mode="overwrite", **kwargs):
        """One local file (a link kept as a link) at `rpath`; a directory is nothing to write
        (directories exist through what is in them). mode='create': FileExistsError if `rpath` exists,
        checked again against the version the commit builds on."""
        path = self._strip_protocol(rpath)
        if os.path.isdir(lpath) and not os.path.islink(lpath):
            return
        with os_errors(path):
            target = write_target(parse_path(path), path, "wb").file()
            if os.path.islink(lpath):
                change = target.with_files([], [Entry.link(target.inner, os.readlink(lpath))])
            else:
                change = target.with_files([_local(lpath, target.inner)])
        if mode == "create":
            self._refuse_existing(path)
            change.absent.append(target.inner)
        with self._batch(path):
            self.transaction.files.append(change)

    def _refuse_existing(self, path: str) -> None:
        if self.exists(path):
            raise FileExistsError(errno.EEXIST, "already in the latest version", path)

    def pipe_file(self, path, value, mode="overwrite", **kwargs):
        with self.open(path, "xb" if mode == "create" else "wb", **kwargs) as f:
            f.write(value)

    def copy(self, path1, path2, recursive=False, maxdepth=None, on_error=None, **kwargs):
        """Copy files into the next version of an artifact (fsspec's rules, as put): a copy is an
        entry for the same content, so nothing is uploaded, from any version of any artifact."""
        path2 = self._destinations(path2)
        with self._batch(path2):
            super().copy(path1, path2, recursive=recursive, maxdepth=maxdepth, on_error=on_error, **kwargs)

    def cp_file(self, path1, path2, **kwargs):
        src, dst = self._strip_protocol(path1), self._strip_protocol(path2)
        with os_errors(src):
            loc = parse_path(src)
            if loc.depth < 4 or not loc.inner:
                return  # a directory: it exists through what is copied into it
            view = self._version(loc)
            inner = _resolve(view, loc.inner, follow_last=False)
            i = view.manifest.find(inner)
            if i is None:
                if view.manifest.is_dir(inner):
                    return
                raise NotFound(f"{view.record.ref} has no entry {loc.inner!r}")
            target = write_target(parse_path(dst), dst, "wb").file()
            change = target.with_files([], [dataclasses.replace(view.manifest[i], path=target.inner)])
        with self._batch(dst):
            self.transaction.files.append(change)

    def mv(self, path1, path2, recursive=False, maxdepth=None, **kwargs):
        """Copy, then remove the source: one version for each artifact involved, so a move within one
        artifact is one version; a source in an immutable version is refused before anything is written."""
        with self._batch(path2):
            super().mv(path1, self._destinations(path2), recursive=recursive, maxdepth=maxdepth, **kwargs)

    def rm(self, path, recursive=False, maxdepth=None):
        """Commit the next version without `path` (globs and lists too; a directory only with
        recursive=True). Removing every file leaves an empty version."""
        with self._batch(path):
            paths = self.expand_path(path, recursive=recursive, maxdepth=maxdepth)
            for p in paths:
                with os_errors(p):
                    target = write_target(parse_path(p), p, "rm")
                    change = target.removing()
                if not recursive and self.isdir(p):
                    raise IsADirectoryError(errno.EISDIR, "a directory: remove it with recursive=True", p)
                self.transaction.files.append(change)

    def rm_file(self, path):
        self.rm(path)

    def mkdir(self, path, create_parents=True, **kwargs):
        """Directories exist through the files in them: nothing to do."""

    def makedirs(self, path, exist_ok=False):
        """Directories exist through the files in them: nothing to do."""

    def _commit(self, changes, options: dict | None = None) -> None:
        """Commit what a transaction gathered (writes.py): one version per artifact."""
        with os_errors(changes[0].path if changes else ""):
            commit_changes(self, changes, options)
        with self._lock:
            self._aliases.clear()


class ArtifactFile(AbstractBufferedFile):
    """A seekable read-only file over an EntryReader: random reads fetch only the pieces they touch,
    sequential ones read ahead (entry_file.py); every byte is checked."""

    def __init__(self, fs, path, reader: EntryReader, info: dict, block_size=None):
        self._reader = reader
        super().__init__(fs, path, mode="rb", block_size=block_size or "default", cache_type="none",
                         size=reader.size)
        self.details = info

    def _fetch_range(self, start, end):
        with os_errors(self.path):
            return self._reader.read(start, end)


def _dir(name: str) -> dict:
    return {"name": name, "type": "directory", "size": 0}


def _file_info(name: str, e: Entry, view: VersionView, inner: str) -> dict:
    """fsspec's info of entry `e` at `inner` in the version. A link has islink and its destination, as
    LocalFileSystem gives them: type "file", sized and digested as the file it leads to within the
    version (what reading it returns), or "other" (size 0) when it leads to a directory or out of
    the version, so that walk, find and get never descend into it and `get` makes it a link again."""
    info = {"name": name, "type": "directory" if e.kind == DIR else "file", "size": e.size, "digest": e.digest,
            "version": f"v{view.record.version}", "reference": e.ref, "executable": e.executable}
    if e.kind == LINK:
        info.update(type="other", destination=e.target, islink=True)
        with contextlib.suppress(NotFound):
            i = view.manifest.find(_resolve(view, inner, follow_last=True))
            if i is not None and view.manifest[i].is_file:
                info.update(type="file", size=view.manifest[i].size, digest=view.manifest[i].digest)
    return info


def _resolve(view: VersionView, inner: str, follow_last: bool) -> str:
    """`inner` with the links among its parts (and the last part too with `follow_last`) followed
    within the version, as the mount's kernel follows them; NotFound for a link that leaves it."""
    m = view.manifest
    if not m.specials:  # no links in this version (nor empty directories): nothing to follow
        return inner
    parts, done, hops = inner.split("/"), "", 0
    while parts:
        path = f"{done}/{parts[0]}".lstrip("/")
        i = m.find(path)
        if i is None or m[i].kind != LINK or (len(parts) == 1 and not follow_last):
            done, parts = path, parts[1:]
            continue
        hops += 1
        target = _link_target(path, m[i].target or "")
        if target is None:
            raise NotFound(f"{view.record.ref}: {path} is a link that leaves the version")
        if hops > 40:  # as the kernel's limit
            raise NotFound(f"{view.record.ref}: {inner}: too many levels of links")
        parts, done = [*target.split("/"), *parts[1:]], ""
    return done


def _link_target(path: str, target: str) -> str | None:
    """The entry path a link at `path` points at, None if it leaves the version."""
    import posixpath

    if target.startswith("/"):
        return None
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
    return None if joined.startswith("..") or joined == "." else joined


def _make_link(target: str, lpath: str) -> None:
    """`lpath` made a symbolic link to `target` (a temp link renamed over whatever was there)."""
    tmp = f"{lpath}.artifactfs-{os.getpid()}-{threading.get_ident()}.tmp"
    os.symlink(target, tmp)
    try:
        os.replace(tmp, lpath)
    except BaseException:
        os.unlink(tmp)
        raise


def _local(source: str, name: str):
    from ..ingest import local_file

    return local_file(source, name)


def _after_fork() -> None:
    for fs in list(_instances.values()):
        fs._reset()
        # the parent's open transaction is the parent's to commit: what the child writes would be
        # gathered in a copy nobody commits, so the child's writes are refused until it opens its own
        fs._forked_in_transaction = fs._intrans
        fs._intrans, fs._transaction = False, None


os.register_at_fork(after_in_child=_after_fork)
