"""The one place where errors become errno values for FUSE, and the decorator every handler wears.

pyfuse3 catches only `FUSEError` inside a request handler; anything else escapes into
`pyfuse3.main()` and takes the whole mount down. So every `Operations` method is wrapped in
`@fuse_op`, which:

- passes `FUSEError` through untouched (handlers raise it on purpose, e.g. ENOENT, EROFS);
- maps an `ArtifactfsError` to its errno through `ERRNO_OF` (first matching class in MRO order)
  and logs one line (debug for the expected ENOENT, warning otherwise);
- maps an `OSError` to its own errno (EIO if it has none) with a log line;
- turns anything unexpected into EIO plus a logged traceback, so a bug costs one request, not the mount;
- lets trio cancellation (`trio.Cancelled`, a `BaseException`) and KeyboardInterrupt/SystemExit
  propagate untouched: they are how the mount shuts down, not request failures.
"""

import errno
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pyfuse3

from ..errors import (
    ArtifactfsError,
    Conflict,
    CorruptData,
    InvalidName,
    InvalidPath,
    LocalIOError,
    NotFound,
    ObjectNotFound,
    PermissionDenied,
    PreconditionFailed,
    StoreUnavailable,
    UsageError,
)

log = logging.getLogger(__name__)

# Ordered most specific first; the first class the exception is an instance of wins.
ERRNO_TABLE: list[tuple[type[BaseException], int]] = [
    (ObjectNotFound, errno.EIO),  # an object the manifest names is gone from the store: data loss, not "no such file"
    (NotFound, errno.ENOENT),
    (InvalidName, errno.ENOENT),  # `MOUNT/acme/x:bad!` simply does not exist as a path
    (InvalidPath, errno.ENOENT),
    (UsageError, errno.EINVAL),
    (PreconditionFailed, errno.EAGAIN),  # a lost compare-and-swap: retrying may succeed
    (Conflict, errno.EEXIST),  # e.g. a name/type clash when the staging mount creates an artifact
    (CorruptData, errno.EIO),  # never serve bytes that fail their checksum
    (StoreUnavailable, errno.EIO),  # a timeout or outage; EIO (not ETIMEDOUT) is what readers expect from a disk
    # PermissionDenied: the *store* refused our credentials. EACCES would make users check the file's
    # mode bits, which are fine; the request could not be served, so EIO plus a log line naming the cause.
    (PermissionDenied, errno.EIO),
    (LocalIOError, errno.EIO),  # refined below from the underlying OSError (ENOSPC, EDQUOT...)
    (ArtifactfsError, errno.EIO),
]

# errno values of a LocalIOError's cause that the caller should see as they are.
_PASS_THROUGH_LOCAL = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EMFILE, errno.ENFILE, errno.ENOMEM}


def errno_of(exc: BaseException) -> int:
    """The errno a FUSE request should fail with for `exc` (EIO for anything unknown)."""
    if isinstance(exc, pyfuse3.FUSEError):
        return exc.errno
    if isinstance(exc, LocalIOError):
        cause = exc.__cause__ or exc.__context__
        code = getattr(exc, "errno", None) or getattr(cause, "errno", None)
        if code in _PASS_THROUGH_LOCAL:
            return code
        if "No space left" in str(exc):
            return errno.ENOSPC
        return errno.EIO
    if isinstance(exc, ArtifactfsError):
        for cls, code in ERRNO_TABLE:
            if isinstance(exc, cls):
                return code
    if isinstance(exc, OSError):
        return exc.errno or errno.EIO
    return errno.EIO


T = TypeVar("T")


def fuse_op(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Decorate an async pyfuse3 Operations method so only FUSEError ever leaves it."""
    name = fn.__name__

    @functools.wraps(fn)
    async def wrapper(*args, **kwargs):
        try:
            return await fn(*args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except ArtifactfsError as exc:
            code = errno_of(exc)
            level = logging.DEBUG if code == errno.ENOENT else logging.WARNING
            log.log(level, "%s: %s -> %s", name, exc, errno.errorcode.get(code, code))
            raise pyfuse3.FUSEError(code) from None
        except OSError as exc:
            code = errno_of(exc)
            log.warning("%s: %s -> %s", name, exc, errno.errorcode.get(code, code))
            raise pyfuse3.FUSEError(code) from None
        except Exception:  # a bug: fail this request, keep the mount alive, keep the traceback
            log.exception("%s: unexpected error -> EIO", name)
            raise pyfuse3.FUSEError(errno.EIO) from None
        # BaseException (trio.Cancelled, KeyboardInterrupt, SystemExit) propagates on purpose.

    return wrapper


def erofs() -> pyfuse3.FUSEError:
    """The error every write operation of a read-only view raises."""
    return pyfuse3.FUSEError(errno.EROFS)


class RefuseWrites:
    """Every write operation of a read-only filesystem: EROFS (a mixin before pyfuse3.Operations)."""

    async def setxattr(self, inode, name, value, ctx):
        raise erofs()

    async def removexattr(self, inode, name, ctx):
        raise erofs()

    async def setattr(self, inode, attr, fields, fh, ctx):
        raise erofs()

    async def mknod(self, parent_inode, name, mode, rdev, ctx):
        raise erofs()

    async def mkdir(self, parent_inode, name, mode, ctx):
        raise erofs()

    async def unlink(self, parent_inode, name, ctx):
        raise erofs()

    async def rmdir(self, parent_inode, name, ctx):
        raise erofs()

    async def symlink(self, parent_inode, name, target, ctx):
        raise erofs()

    async def rename(self, parent_inode_old, name_old, parent_inode_new, name_new, flags, ctx):
        raise erofs()

    async def link(self, inode, new_parent_inode, new_name, ctx):
        raise erofs()

    async def create(self, parent_inode, name, mode, flags, ctx):
        raise erofs()

    async def write(self, fh, off, buf):
        raise erofs()
