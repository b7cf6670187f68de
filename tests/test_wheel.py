"""What `pip install .` gives is the product: build the wheel, install it (not editable) into a fresh
venv, and run the main job from that install alone: commit, mount, read, stage, write, commit from
the mountpoint, get, verify, and the web view."""

import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
import venv

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The `artifactfs` command of a fresh venv that has only the wheel (and its dependencies)."""
    root = tmp_path_factory.mktemp("wheel")
    source, dist = root / "source", root / "dist"  # a clean copy: no build/ left from an earlier build
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".*", "build", "*.egg-info", "__pycache__"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(dist), str(source)],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr
    assert "Warning" not in build.stdout + build.stderr, build.stdout + build.stderr  # a quiet build
    wheels = list(dist.glob("artifactfs-*.whl"))
    assert len(wheels) == 1
    env_dir = root / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    install = subprocess.run([str(py), "-m", "pip", "install", "-q", str(wheels[0])], capture_output=True,
                             text=True, timeout=900)
    if install.returncode != 0 and "No matching distribution" in install.stderr:
        pytest.skip(f"dependencies cannot be installed here: {install.stderr.strip()[-200:]}")
    assert install.returncode == 0, install.stderr
    return env_dir / "bin" / "artifactfs", py


def test_the_installed_wheel_runs_the_main_job(installed, tmp_path):
    artifactfs, py = installed
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARTIFACTFS_", "AWS_", "PYTHON"))}
    env.update(ARTIFACTFS_STORE=str(tmp_path / "store"), ARTIFACTFS_CACHE_DIR=str(tmp_path / "cache"),
               ARTIFACTFS_STAGE_DIR=str(tmp_path / "stages"), ARTIFACTFS_CONFIG=str(tmp_path / "none.toml"),
               PATH=f"{artifactfs.parent}:{env.get('PATH', '')}")

    def run(*args, ok=True):
        res = subprocess.run([str(artifactfs), *map(str, args)], env=env, capture_output=True, text=True,
                             cwd=tmp_path, timeout=120)
        if ok:
            assert res.returncode == 0, (args, res.stdout, res.stderr)
        return res

    packages = ["artifactfs_cli"] + [os.path.relpath(d, REPO).replace(os.sep, ".") for d, _, names
                                     in os.walk(os.path.join(REPO, "artifactfs")) if "__init__.py" in names]
    where = subprocess.run([str(py), "-c", f"import importlib; import artifactfs; print(artifactfs.__file__); "
                            f"[importlib.import_module(p) for p in {packages!r}]"],
                           env=env, capture_output=True, text=True, cwd=tmp_path)
    assert where.returncode == 0, where.stderr  # every package of the source tree is in the wheel
    assert str(artifactfs.parent.parent) in where.stdout, where.stdout  # imported from the install, not the source
    assert subprocess.run([str(py), "-m", "artifactfs", "--help"], env=env, capture_output=True).returncode == 0
    assert run("--version").stdout.strip().endswith(__import__("artifactfs").__version__)
    assert "Usage" in run("--help").stdout

    src = tmp_path / "src"
    (src / "images").mkdir(parents=True)
    (src / "labels.csv").write_text("file,label\ncat.png,cat\n")
    (src / "images" / "cat.png").write_bytes(os.urandom(100_000))
    run("commit", "acme/p/ds", "--dir", src)

    mnt, stage = tmp_path / "mnt", tmp_path / "stage"
    mnt.mkdir()
    stage.mkdir()
    run("mount", mnt)
    try:
        assert (mnt / "acme/p/ds:latest/labels.csv").read_text() == "file,label\ncat.png,cat\n"
        assert (mnt / "acme/p/ds:v0/images/cat.png").read_bytes() == (src / "images" / "cat.png").read_bytes()
    finally:
        run("umount", mnt)
    run("stage", "acme/p/ds", stage)
    try:
        (stage / "labels.csv").write_text("file,label\ncat.png,cat\ndog.png,dog\n")
        run("commit", stage, "-m", "a dog")
    finally:
        run("umount", stage)
    out = tmp_path / "out"
    run("get", "acme/p/ds:v1", "--root", out)
    assert (out / "labels.csv").read_text().endswith("dog.png,dog\n")
    assert "no problems" in run("verify", "--all").stdout

    # the web view's templates and stylesheet are in the wheel: a page renders, its stylesheet loads
    ui = subprocess.Popen([str(artifactfs), "ui", "--port", "0"], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        url = re.search(r"http://127\.0\.0\.1:\d+/", ui.stdout.readline()).group(0)
        with urllib.request.urlopen(url + "e/acme/p/ds", timeout=30) as page:
            assert "a dog" in page.read().decode()
        with urllib.request.urlopen(url + "static/style.css", timeout=30) as css:
            assert css.headers["content-type"].startswith("text/css") and css.read()
        with urllib.request.urlopen(url + "static/copy.js", timeout=30) as script:  # the copy buttons
            assert "clipboard" in script.read().decode()
    finally:
        ui.send_signal(signal.SIGINT)
        _, err = ui.communicate(timeout=30)
    assert "Traceback" not in err, err
