"""moto's server in a process of its own on 127.0.0.1 (`python -m moto.server`, a free port).

The session's in-process server (tests/conftest.py's `moto_server`) keeps its state in moto's
module-level backends, which every test's reset (`aws_env`) empties; a server in another process
has backends of its own, so state that must outlive other tests (the real terraform deployment)
lives there.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from typing import Self

from tests.git_servers import free_port


class MotoProcess:
    """`with MotoProcess() as moto:` serves AWS at `moto.url` until the block ends."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Self:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto's server exited {self.process.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    self.__exit__()
                    raise RuntimeError(f"moto's server never listened on {self.url}") from None
                time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
