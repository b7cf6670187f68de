"""The cache directory itself: made or claimed as artifactfs's (a CACHEDIR.TAG), so that eviction and
`cache clean` never touch a directory of someone else's files."""

import os

from .errors import LocalIOError, UsageError

TAG = "CACHEDIR.TAG"
_TAG_TEXT = (b"Signature: 8a477f597d28d172789f06886806bc55\n"
             b"# the artifactfs cache: artifactfs created this directory and may delete anything in it.\n")
_OWN = {"pieces", "runs", "manifests", "tmp", "logs", TAG}  # what artifactfs keeps in a cache directory
_claimed: set[str] = set()


def claim_cache_dir(cache_dir: str) -> str:
    """The absolute cache directory, made if missing (mode 0700), and marked as artifactfs's with a
    CACHEDIR.TAG (which backup tools also honour). An existing directory is used if it is empty, holds
    only what artifactfs keeps there (an older cache) or is marked; one with anything else is refused,
    never chmod'ed or cleaned: `cache clean` and eviction must not touch files artifactfs did not make."""
    path = os.path.abspath(cache_dir)
    if path in _claimed:
        return path
    try:
        os.makedirs(path, mode=0o700)
    except FileExistsError:
        if not os.path.isdir(path):
            raise UsageError(f"cache directory {cache_dir} is not a directory") from None
        names = set(os.listdir(path))
        if not _is_ours(path, names):
            foreign = sorted(names - _OWN)
            raise UsageError(f"cache directory {cache_dir} holds files artifactfs did not put there "
                             f"({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}): give a new or "
                             "empty directory (--cache-dir, ARTIFACTFS_CACHE_DIR)") from None
    except OSError as exc:
        raise LocalIOError(f"cannot make cache directory {cache_dir}: {exc.strerror}") from None
    tag = os.path.join(path, TAG)
    if not os.path.exists(tag):
        try:
            fd = os.open(tag, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, _TAG_TEXT)
            finally:
                os.close(fd)
        except FileExistsError:
            pass  # another process or thread wrote it
        except OSError as exc:
            raise LocalIOError(f"cannot write {tag}: {exc.strerror}") from None
    _claimed.add(path)
    return path


def _is_ours(path: str, names: set[str]) -> bool:
    if TAG not in names:
        return names <= _OWN
    try:
        with open(os.path.join(path, TAG), "rb") as f:
            text = f.read(len(_TAG_TEXT))
    except OSError:
        return False
    # a tag cut short is one another process is writing this moment (into a directory of ours alone)
    return text == _TAG_TEXT or (_TAG_TEXT.startswith(text) and names <= _OWN)


def manifests_dir(cache_dir: str) -> str:
    """Where the Repository keeps its local manifest cache: inside the cache, under the same bound."""
    return os.path.join(claim_cache_dir(cache_dir), "manifests")
