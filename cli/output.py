"""Printing helpers shared by the commands: JSON, sizes, progress bars, the error boundary."""

import contextlib
import json
import logging
import os
import sys
import threading
import time
import traceback
from datetime import UTC, datetime

import click

from artifactfs.errors import ArtifactfsError

INTERNAL_ERROR_EXIT = 70

# Library log lines (a corrupt blob, a cache write that failed) belong in daemon logs; a command reports
# its failure as one line. Without a handler, Python would print warnings and errors to stderr as well.
logging.getLogger("artifactfs").addHandler(logging.NullHandler())




def emit_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


class Progress:
    """A byte progress bar on stderr, shown only on a terminal and only after the first half second.
    Safe to call from worker threads."""

    def __init__(self, total: int, label: str):
        self.total, self.label = total, label
        self.done = 0
        self.start = time.monotonic()
        self._lock = threading.Lock()
        self._bar = None
        self._enabled = sys.stderr.isatty() and total > 0

    def __call__(self, n: int) -> None:
        if not self._enabled:
            return
        with self._lock:
            self.done += n
            if self._bar is None and time.monotonic() - self.start > 0.5:
                self._bar = click.progressbar(length=self.total, label=self.label, file=sys.stderr,
                                              show_pos=False, show_percent=True, show_eta=True)
                self._bar.__enter__()
                self._bar.update(self.done)
            elif self._bar is not None:
                self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @classmethod
    @contextlib.contextmanager
    def bar(cls, label: str):
        """A factory for the library's `progress` argument: called with the total once the library
        knows it, it returns the bar; the bar is closed when the block ends."""
        made = []

        def factory(total: int) -> "Progress":
            made.append(cls(total, label))
            return made[-1]

        try:
            yield factory
        finally:
            for bar in made:
                bar.close()


def one_line(exc: BaseException) -> str:
    """An error message as one line, whatever a library put in it."""
    return " ".join(str(exc).split())


def run_guarded(fn):
    """Run a command body: our errors become one line and their exit code, never a traceback."""
    try:
        return fn()
    except ArtifactfsError as exc:
        click.echo(f"artifactfs: error: {one_line(exc)}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("artifactfs: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:  # `artifactfs ls | head -1`: the reader has all it wanted; quiet, as `ls` is
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
    except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
        raise
    except Exception as exc:  # a bug: say so in one line, keep the traceback for whoever asks
        if os.environ.get("ARTIFACTFS_DEBUG"):
            traceback.print_exc()
        logging.getLogger("artifactfs").debug("internal error", exc_info=True)
        click.echo(f"artifactfs: internal error: {type(exc).__name__}: {exc} "
                   "(set ARTIFACTFS_DEBUG=1 for the traceback)", err=True)
        sys.exit(INTERNAL_ERROR_EXIT)


def ttl_state(expires_at: float) -> str:
    """`expires at ...` or `expired at ...`, in ISO 8601 UTC as records write their times."""
    when = datetime.fromtimestamp(expires_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{'expired' if expires_at <= time.time() else 'expires'} at {when}"
