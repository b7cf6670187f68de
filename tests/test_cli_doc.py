"""docs/CLI.md is every command's --help as the CLI prints it now (scripts/cli_doc.py writes it)."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_command_reference_matches_the_cli():
    res = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "cli_doc.py"), "--check"],
                         env={**os.environ, "COLUMNS": "80"}, capture_output=True, text=True)
    assert res.returncode == 0, "docs/CLI.md is out of date: run .venv/bin/python scripts/cli_doc.py"
