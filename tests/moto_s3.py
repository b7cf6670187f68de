"""A second S3 implementation for the tests: moto's S3 server (PyPI `moto[server]`) on 127.0.0.1.

Run as a script here, it answers one request at a time. Served side by side, moto is not safe for
what artifactfs relies on: it checks a PUT's condition and then writes (two conditional writes could
both pass), and it disposes of an object's old bytes while a GET may still be reading them (seen as
a damaged alias record in tests/test_lifecycle.py's races). One at a time, each request is one
step, as on a real server. `--no-conditional-writes` makes it ignore If-None-Match and If-Match on
PUT, as S3 servers without conditional writes do: the server artifactfs must refuse to write to.
"""

import argparse
import os
import socket
import subprocess
import sys
import threading
import time


class MotoServer:
    def __init__(self, workdir: str, conditional_writes: bool = True):
        self.workdir = workdir
        self.conditional_writes = conditional_writes
        self.proc: subprocess.Popen | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id="moto", aws_secret_access_key="moto",
                            region_name="us-east-1")

    def start(self, timeout: float = 30) -> None:
        with socket.socket() as s:  # a free port, chosen by the kernel
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        args = [sys.executable, __file__, "--port", str(self.port)]
        if not self.conditional_writes:
            args.append("--no-conditional-writes")
        log = open(os.path.join(self.workdir, f"moto-{self.port}.log"), "wb")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto exited with {self.proc.returncode}; see {self.workdir}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moto did not answer within {timeout} s; see {self.workdir}")

    def stop(self) -> None:
        from tests.seaweed import stop_group  # (this file also runs as the server's script)

        stop_group(self.proc)
        self.proc = None

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)


def _serve(port: int, conditional_writes: bool) -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import run_simple

    app = DomainDispatcherApplication(create_backend_app)
    one_at_a_time = threading.Lock()

    def serve(environ, start_response):
        if not conditional_writes and environ["REQUEST_METHOD"] == "PUT":
            environ.pop("HTTP_IF_NONE_MATCH", None)
            environ.pop("HTTP_IF_MATCH", None)
        with one_at_a_time:  # the whole answer made inside: moto's reads too race its writes
            return list(app(environ, start_response))

    run_simple("127.0.0.1", port, serve, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--no-conditional-writes", action="store_true")
    options = parser.parse_args()
    _serve(options.port, not options.no_conditional_writes)
