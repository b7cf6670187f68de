#!/usr/bin/env bash
# The main job on the embedded default store: commit a sample folder, mount every version, read it
# with plain tools, unmount. Run scripts/setup.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
work=$(mktemp -d /tmp/artifactfs-demo.XXXXXX)
mnt="$work/mnt"
cleanup() { mountpoint -q "$mnt" && artifactfs umount "$mnt"; rm -rf "$work"; }
trap cleanup EXIT

# A small, deterministic sample: a CSV, a text file, and a 20 MiB binary (chunked: > 8 MiB).
python3 - "$work/sample" <<'PY'
import os, random, sys
root = sys.argv[1]
os.makedirs(f"{root}/images", exist_ok=True)
rng = random.Random(42)
with open(f"{root}/labels.csv", "w") as f:
    f.write("file,label\n" + "".join(f"images/img{i:02d}.bin,{rng.choice(['cat', 'dog'])}\n" for i in range(8)))
for i in range(8):
    with open(f"{root}/images/img{i:02d}.bin", "wb") as f:
        f.write(rng.randbytes(64 * 1024))
with open(f"{root}/weights.bin", "wb") as f:
    f.write(rng.randbytes(20 * 1024 * 1024))
with open(f"{root}/README.txt", "w") as f:
    f.write("Sample dataset committed by artifactfs's demo.\n")
PY

echo "== commit (store: ${ARTIFACTFS_STORE:-~/.local/share/artifactfs/store})"
artifactfs commit --dir "$work/sample" demo/samples/flowers --type dataset -m "demo sample" --alias demo
artifactfs ls demo/samples/flowers

echo "== mount"
mkdir "$mnt"
artifactfs mount "$mnt"
ls -l "$mnt/demo/samples/"
ls -l "$mnt/demo/samples/flowers:latest/"
echo "== read with plain tools"
head -n 4 "$mnt/demo/samples/flowers:latest/labels.csv"
cat "$mnt/demo/samples/flowers:demo/README.txt"
cmp "$mnt/demo/samples/flowers:latest/weights.bin" "$work/sample/weights.bin" && echo "weights.bin: identical to the committed file"
getfattr -d -m user.artifactfs "$mnt/demo/samples/flowers:latest" 2>/dev/null || true
echo "== what the mount fetched and read from its cache"
getfattr --only-values -n user.artifactfs.stats "$mnt" 2>/dev/null && echo || true
artifactfs umount "$mnt"
echo "== done"
