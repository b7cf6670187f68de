"""A stage's local directory: where everything a staging mount holds lives, and how it is found again.

    <stages>/<id>/stage.json          id, store, artifact, type, base version and manifest, mountpoint,
                                      journal generation, whether the last daemon exited cleanly
    <stages>/<id>/journal-<G>.jsonl   tree changes since the base (see journal.py, tree.py)
    <stages>/<id>/data/<data id>      files created or copied up (named by id, not by user path)
    <stages>/<id>/lock                flock'ed by whoever owns the stage (the mount daemon or a commit)
    <stages>/<id>/daemon.log

The directory root is $ARTIFACTFS_STAGE_DIR or ~/.local/share/artifactfs/stages (mode 0700); it is
separate from the read cache on purpose. A rebase (after a commit) writes a new journal generation and
then switches stage.json to it with one rename, so a crash leaves either the old state or the new one.
"""

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field

from ..errors import Conflict, InvalidName, LocalIOError, NotFound
from ..localfs import write_atomic
from ..manifest import Manifest
from .journal import read_journal, write_journal
from .tree import StageTree

log = logging.getLogger(__name__)

STAGE_DIR_ENV = "ARTIFACTFS_STAGE_DIR"
DEFAULT_STAGE_DIR = "~/.local/share/artifactfs/stages"
_ID = re.compile(r"^[0-9a-f]{12}$")


def stages_root() -> str:
    return os.path.abspath(os.path.expanduser(os.environ.get(STAGE_DIR_ENV) or DEFAULT_STAGE_DIR))


def check_stage_id(stage_id: str) -> str:
    if not _ID.match(stage_id or ""):
        raise InvalidName(f"invalid stage id {stage_id!r}: expected 12 hex digits (see `artifactfs stage list`)")
    return stage_id


@dataclass
class StageInfo:
    id: str
    store: str
    endpoint_url: str | None
    artifact: str
    type: str
    base_version: int | None
    base_manifest: str | None
    base_mtime_ns: int
    created_at: float
    generation: int = 0
    mountpoint: str | None = None
    pid: int | None = None
    clean: bool = True  # the last daemon flushed and exited (recorded digests can be trusted)
    extra: dict = field(default_factory=dict)


class Stage:
    def __init__(self, root: str):
        self.root = root
        self.info = self._read_info()
        self._lock_fd = -1

    # ---- creation and discovery ---------------------------------------------------------------
    @classmethod
    def create(cls, store: str, endpoint_url: str | None, artifact: str, type: str,
               base_version: int | None, base_manifest: str | None) -> "Stage":
        parent = stages_root()
        os.makedirs(parent, mode=0o700, exist_ok=True)
        stage_id = uuid.uuid4().hex[:12]
        root = os.path.join(parent, stage_id)
        try:
            os.mkdir(root, 0o700)  # (makedirs would give only the leaf the mode)
            os.mkdir(os.path.join(root, "data"), 0o700)
            info = StageInfo(stage_id, store, endpoint_url, artifact, type, base_version, base_manifest,
                             time.time_ns(), time.time())
            write_journal(os.path.join(root, "journal-0.jsonl"), [])
            _write_json(os.path.join(root, "stage.json"), asdict(info))
        except OSError as exc:
            shutil.rmtree(root, ignore_errors=True)
            raise LocalIOError(f"cannot create stage directory {root}: {exc.strerror}") from exc
        return cls(root)

    @classmethod
    def open(cls, stage_id: str) -> "Stage":
        root = os.path.join(stages_root(), check_stage_id(stage_id))
        if not os.path.exists(os.path.join(root, "stage.json")):
            raise NotFound(f"no stage {stage_id} on this machine (see `artifactfs stage list`)")
        return cls(root)

    def _read_info(self) -> StageInfo:
        path = os.path.join(self.root, "stage.json")
        try:
            with open(path, "rb") as f:
                obj = json.load(f)
            return StageInfo(**obj)
        except FileNotFoundError:
            raise NotFound(f"stage directory {self.root} has no stage.json") from None
        except (OSError, ValueError, TypeError) as exc:
            raise LocalIOError(f"cannot read {path}: {exc}") from None

    def reload(self) -> None:
        self.info = self._read_info()

    def save(self) -> None:
        try:
            _write_json(os.path.join(self.root, "stage.json"), asdict(self.info))
        except OSError as exc:
            raise LocalIOError(f"cannot write stage state in {self.root}: {exc.strerror}") from exc

    # ---- paths --------------------------------------------------------------------------------
    @property
    def id(self) -> str:
        return self.info.id

    @property
    def journal_path(self) -> str:
        return os.path.join(self.root, f"journal-{self.info.generation}.jsonl")

    @property
    def log_path(self) -> str:
        return os.path.join(self.root, "daemon.log")

    def data_path(self, data_id: str) -> str:
        return os.path.join(self.root, "data", data_id)

    @staticmethod
    def new_data_id() -> str:
        return uuid.uuid4().hex

    def base_label(self) -> str:
        return "empty" if self.info.base_version is None else f"v{self.info.base_version}"

    # ---- ownership ----------------------------------------------------------------------------
    def try_lock(self) -> bool:
        """Take the stage for this process (daemon or offline commit). False if someone holds it."""
        fd = os.open(os.path.join(self.root, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def lock(self) -> None:
        if not self.try_lock():
            where = f" (mounted on {self.info.mountpoint})" if self.info.mountpoint else ""
            raise Conflict(f"stage {self.id} is in use by a running daemon{where}")

    def unlock(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def in_use(self) -> bool:
        """True while a daemon (or a commit) holds the stage."""
        if self._lock_fd >= 0:
            return True
        if self.try_lock():
            self.unlock()
            return False
        return True

    def died(self) -> bool:
        """Its last daemon stopped without saving the stage (killed, crashed): nothing holds it, and
        its record still names the daemon's pid."""
        return not self.info.clean and self.info.pid is not None and not self.in_use()

    def death_note(self) -> str:
        """One line on a daemon that died: where its log is and the last thing it said."""
        last = ""
        with contextlib.suppress(OSError), open(self.log_path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 4096))
            lines = [line for line in f.read().decode("utf-8", "replace").splitlines() if line.strip()]
            last = lines[-1].strip() if lines else ""
        said = f"; it last logged: {last[:200]}" if last else ""
        return (f"the daemon of stage {self.id} (pid {self.info.pid}) is not running: it died without saving "
                f"the stage (killed, or out of memory); its log is {self.log_path}{said}")

    # ---- the tree -----------------------------------------------------------------------------
    def load_tree(self, base: Manifest, recover: bool = True) -> StageTree:
        """Base + journal replay. With `recover` (the owner, after an unclean exit), recorded digests are
        dropped (the data file may have been written after them) and data files are cut to their
        journaled size. A frozen live daemon has journaled everything: no recovery needed."""
        tree = StageTree(base, self.info.base_mtime_ns)
        ops = read_journal(self.journal_path)
        for op in ops:
            tree.apply(op)
        self.replayed = len(ops)
        if recover and not self.info.clean:
            for _, node, _ in tree.walk_files():
                if node is not None and node.data is not None:
                    node.digest = node.chunks = None
                    path = self.data_path(node.data)
                    try:
                        if os.path.getsize(path) > node.size:
                            os.truncate(path, node.size)
                    except OSError as exc:
                        raise LocalIOError(f"stage {self.id}: data file of {node.name!r} is missing "
                                           f"({exc.strerror})") from None
        return tree

    def remove_unreferenced_data(self, tree: StageTree) -> int:
        """Delete data files the tree no longer names (overwritten, deleted, committed). Owner only."""
        used = {node.data for _, node, _ in tree.walk_files() if node is not None and node.data}
        removed = 0
        for name in os.listdir(os.path.join(self.root, "data")):
            if name not in used:
                os.unlink(self.data_path(name))
                removed += 1
        return removed

    def rebase(self, version: int, manifest_digest: str) -> None:
        """Make `version` the base with an empty change list (its content is the stage's content)."""
        self._switch_journal([], base_version=version, base_manifest=manifest_digest)

    def compact(self, tree: StageTree) -> bool:
        """Replace the journal by a snapshot of `tree` (same base) if that is shorter. Owner only,
        before serving (a commit also starts a fresh journal)."""
        ops = tree.snapshot_ops()
        if len(ops) >= getattr(self, "replayed", 0):
            return False
        self._switch_journal(ops)
        return True

    def _switch_journal(self, ops: list[dict], **info) -> None:
        """Write `ops` as the next journal generation, then point stage.json at it (one rename)."""
        generation = self.info.generation + 1
        old_journal = self.journal_path
        write_journal(os.path.join(self.root, f"journal-{generation}.jsonl"), ops)
        self.info.generation = generation
        for key, value in info.items():
            setattr(self.info, key, value)
        self.save()
        with contextlib.suppress(OSError):
            os.unlink(old_journal)

    def discard(self) -> None:
        if self.in_use():
            raise Conflict(f"stage {self.id} is mounted on {self.info.mountpoint}: unmount it first "
                           f"(artifactfs umount {self.info.mountpoint})")
        shutil.rmtree(self.root)


def list_stages() -> list[Stage]:
    root = stages_root()
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    stages = []
    for name in names:
        if _ID.match(name) and os.path.exists(os.path.join(root, name, "stage.json")):
            try:
                stages.append(Stage(os.path.join(root, name)))
            except (NotFound, LocalIOError) as exc:
                log.warning("skipping stage %s: %s", name, exc)
    return sorted(stages, key=lambda s: s.info.created_at)


def find_by_mountpoint(mountpoint: str) -> Stage | None:
    """The stage last mounted on `mountpoint`, preferring one whose daemon is running."""
    path = os.path.abspath(mountpoint)
    found = [s for s in list_stages() if s.info.mountpoint == path]
    live = [s for s in found if s.in_use()]
    return (live or found)[-1] if found else None


def _write_json(path: str, obj: dict) -> None:
    write_atomic(path, json.dumps(obj, indent=1, sort_keys=True).encode("utf-8"))
