"""The lint and type checks CI holds the code to (configured in pyproject.toml): clean, or this fails
with what they found."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)


def run(tool: str, *args: str) -> subprocess.CompletedProcess:
    exe = os.path.join(BIN, tool)
    assert os.path.exists(exe), f"{tool} is not installed: pip install -e .[test]"
    return subprocess.run([exe, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_is_clean():
    r = run("ruff", "check", ".")
    assert r.returncode == 0, r.stdout[-4000:]


def test_mypy_is_clean():
    r = run("mypy")
    assert r.returncode == 0, r.stdout[-4000:]
