""".ci/run fails a run that leaves a mount behind, and looks only at the mounts under its own temporary
directory (scripts/mounts_under.sh): another artifactfs mount on the machine is not its business."""

import os
import subprocess

import pytest

from tests.fuse_util import Mount, mount_factory

SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "mounts_under.sh")


@pytest.mark.parametrize("backend", ["local"])
def test_only_the_mounts_under_the_run_directory_count(env, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "other").mkdir()
    with mount_factory(Mount, env, tmp_path / "run", "mine") as make_mine, \
            mount_factory(Mount, env, tmp_path / "other", "theirs") as make_theirs:
        mine, theirs = make_mine(), make_theirs()
        listed = subprocess.run(["bash", SCRIPT, str(tmp_path / "run")], capture_output=True, text=True, check=True)
        assert listed.stdout.splitlines() == [mine.mountpoint]
        assert theirs.mountpoint not in listed.stdout
        # a directory whose name merely starts like the run's is not under it
        sibling = subprocess.run(["bash", SCRIPT, str(tmp_path / "ru")], capture_output=True, text=True)
        assert sibling.stdout == ""
