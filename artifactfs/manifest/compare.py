"""Two manifests compared as a stream: the paths added, removed or changed from one to the other, in
path order, with no object per entry.

Both manifests are sorted by path, so one merge pass finds every change. Runs of entries that are the
same in both (same paths, same contents) are skipped by comparing slices of the columns, a block at a
time (galloping: 16, 32, 64... entries, then a binary search for the first difference), so a diff of
two million-entry versions that differ in a few thousand places costs a few thousand short searches,
not two million Python steps. What counts as the same content is what `diff` compares: kind, link
target, digest, size, mode and a reference's URI, ETag and VersionId, not where the bytes are stored.
"""

import bisect
import operator
from array import array
from collections.abc import Iterator
from itertools import islice

from .table import Manifest

ADDED, REMOVED, CHANGED = "added", "removed", "changed"
_FIRST_BLOCK = 16
_MAX_BLOCK = 1 << 16
_CONTENT = ("kind", "target", "ref", "etag", "version_id", "no_digest")  # the rare fields a diff compares


class _Side:
    """One manifest's columns, as the comparison reads them."""

    def __init__(self, m: Manifest):
        self.m = m
        self.blob, self.ends = m._paths.blob, m._paths.offsets
        offsets = self.ends
        self.lengths = array("L", map(operator.sub, islice(offsets, 1, None), offsets))
        self.digests, self.sizes, self.executable = m._digests, m._sizes, m._executable
        self.extras = m._extras
        self.rare = sorted(m._extras)  # entries with extra fields: compared one by one

    def path(self, i: int) -> bytes:
        return self.blob[self.ends[i]:self.ends[i + 1]]

    def rare_in(self, i: int, n: int) -> bool:
        k = bisect.bisect_left(self.rare, i)
        return k < len(self.rare) and self.rare[k] < i + n

    def content(self, i: int) -> tuple:
        extra = self.extras.get(i)
        rare = () if not extra else tuple(extra.get(k) for k in _CONTENT)
        return self.digests[16 * i:16 * i + 16], self.sizes[i], self.executable[i], rare


def _same_block(a: _Side, i: int, b: _Side, j: int, n: int) -> bool:
    """Whether entries [i, i+n) of `a` are [j, j+n) of `b`: paths and contents, by column slices."""
    return (a.lengths[i:i + n] == b.lengths[j:j + n]
            and a.blob[a.ends[i]:a.ends[i + n]] == b.blob[b.ends[j]:b.ends[j + n]]
            and a.digests[16 * i:16 * (i + n)] == b.digests[16 * j:16 * (j + n)]
            and a.sizes[i:i + n] == b.sizes[j:j + n]
            and a.executable[i:i + n] == b.executable[j:j + n]
            and not (a.rare_in(i, n) or b.rare_in(j, n)))


def _same_run(a: _Side, i: int, b: _Side, j: int, limit: int) -> int:
    """How many entries from (i, j) on are the same in both, at most `limit`."""
    done, step = 0, _FIRST_BLOCK
    while done < limit:
        n = min(step, limit - done)
        if not _same_block(a, i + done, b, j + done, n):
            lo, hi = done, done + n  # the first difference lies in [lo, hi)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if _same_block(a, i + lo, b, j + lo, mid - lo):
                    lo = mid
                else:
                    hi = mid
            return lo
        done += n
        step = min(step * 2, _MAX_BLOCK)
    return done


def changes(old: Manifest, new: Manifest) -> Iterator[tuple[str, int, int]]:
    """(ADDED, -1, index in new), (REMOVED, index in old, -1) or (CHANGED, index in old, index in new)
    for each path that differs from `old` to `new`, in path order."""
    a, b = _Side(old), _Side(new)
    i = j = 0
    na, nb = len(old), len(new)
    while i < na and j < nb:
        run = _same_run(a, i, b, j, min(na - i, nb - j))
        i, j = i + run, j + run
        while i < na and j < nb:  # step until a path is in both with the same content again
            pa, pb = a.path(i), b.path(j)
            if pa == pb:
                same = a.content(i) == b.content(j)
                if not same:
                    yield CHANGED, i, j
                i, j = i + 1, j + 1
                if same:  # in step again (a rare entry, which a block never covers, is stepped over)
                    break
            elif pa < pb:
                yield REMOVED, i, -1
                i += 1
            else:
                yield ADDED, -1, j
                j += 1
    for k in range(i, na):
        yield REMOVED, k, -1
    for k in range(j, nb):
        yield ADDED, -1, k
