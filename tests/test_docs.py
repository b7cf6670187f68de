"""Every `sh` and `python` block of README.md and docs/GUIDE.md runs as written, in order, as a user
would type them one after the other: in an empty working directory, on a store of the test's own,
with `/mnt/` standing for a directory of the test's (a test may not mount on the machine's /mnt).

Blocks fenced `text`, `console` or `toml` are synopses, transcripts and configuration, not commands.
docs/PYTHON_API.md's blocks are run by tests/test_api.py. The blocks that set up the machine are left
out here: README's first two (CI runs the second; tests/test_wheel.py runs the first one's main job)
and its Install block (what scripts/setup.sh runs; test_wheel.py runs `pip install .`). A
Python block that imports a package this environment lacks (torch is not a test dependency) is
left out and named in the output.
"""

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..")
MACHINE_SETUP = ("scripts/setup.sh", "pip install .")


def code_blocks(doc: str) -> list[tuple[str, str]]:
    with open(os.path.join(ROOT, doc)) as f:
        return re.findall(r"^```(sh|python)\n(.*?)^```", f.read(), re.S | re.M)


def missing_imports(code: str) -> list[str]:
    names = re.findall(r"^\s*(?:import|from)\s+([A-Za-z_]\w*)", code, re.M)
    names += [n for line in re.findall(r"^\s*import\s+(.+)$", code, re.M) for n in re.findall(r",\s*(\w+)", line)]
    return sorted({n for n in names if importlib.util.find_spec(n) is None})


@pytest.mark.parametrize("backend", ["local"])  # the blocks use the embedded default kind of store
@pytest.mark.parametrize("doc", ["README.md", "docs/GUIDE.md"])
def test_every_block_runs_as_written(doc, env, tmp_path):
    work, mnt = tmp_path / "work", tmp_path / "mnt"
    work.mkdir()
    ray_tmp = tempfile.mkdtemp(prefix="ray-")  # Ray's own files (default /tmp/ray); short: its socket paths
    run_env = dict(env, ARTIFACTFS_STAGE_DIR=str(tmp_path / "stages"), RAY_AUTH_MODE="disabled", RAY_TMPDIR=ray_tmp)
    blocks = code_blocks(doc)
    assert len(blocks) >= 4, doc
    ran = 0
    try:
        for i, (lang, code) in enumerate(blocks, 1):
            if any(step in code for step in MACHINE_SETUP):
                continue
            missing = missing_imports(code) if lang == "python" else []
            if missing:
                print(f"{doc} block {i} left out: it imports {', '.join(missing)}, not installed here")
                continue
            code = code.replace("/mnt/", f"{mnt}/")
            cmd = ["bash", "-euo", "pipefail", "-c", code] if lang == "sh" else [sys.executable, "-c", code]
            proc = subprocess.run(cmd, cwd=work, env=run_env, capture_output=True, text=True, timeout=300)
            assert proc.returncode == 0, f"{doc} block {i} ({lang}) failed:\n{code}\n--- out:\n{proc.stdout}\n" \
                                         f"--- err:\n{proc.stderr}"
            ran += 1
    finally:
        for mountpoint in sorted(mnt.glob("*")) if mnt.exists() else []:
            if os.path.ismount(mountpoint):
                subprocess.run(["fusermount3", "-u", str(mountpoint)], capture_output=True)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert ran >= 3
