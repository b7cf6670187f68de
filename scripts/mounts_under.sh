#!/usr/bin/env bash
# Prints the artifactfs FUSE mounts below ROOT, one a line: what .ci/run checks after the tests (only
# the mounts of its own run, never other mounts on the machine).
set -euo pipefail
root="${1:?usage: mounts_under.sh ROOT}"
root="$(cd "$root" && pwd -P)/"
findmnt -rn -o TARGET,FSTYPE | awk -v root="$root" \
  '$2 ~ /^fuse\.artifactfs/ && substr($1, 1, length(root)) == root {print $1}'
