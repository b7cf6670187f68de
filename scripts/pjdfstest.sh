#!/bin/bash
# Run the POSIX suite pjdfstest against an empty staging mount and print the result per group.
#   scripts/pjdfstest.sh PJDFSTEST_CHECKOUT [GROUP...]      (e.g. GROUP = rename chmod utimensat)
# pjdfstest is not shipped here: give a checkout of it (github.com/pjd/pjdfstest). It is built with a
# config.h for Linux (no autotools needed). The store, cache and stage live in a temp directory that
# is removed at the end; the stage is unmounted and discarded. docs/SEMANTICS.md lists which groups
# fail by design and why.
set -euo pipefail
src=$(realpath "${1:?usage: $0 PJDFSTEST_CHECKOUT [GROUP...]}")
shift
groups=("$@")
here=$(cd "$(dirname "$0")/.." && pwd)
af=${ARTIFACTFS:-$(command -v artifactfs || echo "$here/.venv/bin/artifactfs")}
work=$(mktemp -d)
export ARTIFACTFS_STORE=$work/store ARTIFACTFS_CACHE_DIR=$work/cache ARTIFACTFS_STAGE_DIR=$work/stages
export ARTIFACTFS_CONFIG=$work/none.toml

build=$work/pjdfstest
cp -r "$src" "$build"
defines="FCHMODAT FCHOWNAT FSTATAT LINKAT MKDIRAT MKFIFOAT MKNODAT OPENAT POSIX_FALLOCATE RENAMEAT
         STRUCT_STAT_ST_ATIM STRUCT_STAT_ST_CTIM STRUCT_STAT_ST_MTIM SYMLINKAT SYS_SYSMACROS_H UNLINKAT UTIMENSAT"
for d in $defines; do echo "#define HAVE_$d 1"; done > "$build/config.h"
gcc -O1 -D_GNU_SOURCE -o "$build/pjdfstest" "$build/pjdfstest.c"

mkdir -p "$work/stage"
"$af" stage acme/pjd/fs "$work/stage" --empty >/dev/null
cleanup() {
    "$af" umount "$work/stage" >/dev/null 2>&1 || true
    for id in $("$af" stage list | cut -f1); do "$af" stage discard "$id" >/dev/null 2>&1 || true; done
    rm -rf "$work"
}
trap cleanup EXIT

cd "$work/stage"
if [ ${#groups[@]} -eq 0 ]; then
    mapfile -t groups < <(cd "$build/tests" && ls -d */ | tr -d /)
fi
printf '%-16s %s\n' group result
for g in "${groups[@]}"; do
    out=$(timeout 900 prove -r "$build/tests/$g" 2>&1 || true)
    result=$(echo "$out" | grep -E '^Result:' | head -1 || true)
    failed=$(echo "$out" | grep -cE 'Failed [0-9]+/[0-9]+ subtests' || true)
    printf '%-16s %s %s\n' "$g" "${result:-no result}" "$( [ "$failed" -gt 0 ] && echo "($failed files with failures)" )"
    if [ -n "${VERBOSE:-}" ]; then echo "$out" | grep -E 'Failed [0-9]+/|Failed tests:' | sed 's/^/    /' || true; fi
done
