"""Real git remotes on 127.0.0.1 for the tests: `git daemon` (anonymous, git://) and git's own
smart-HTTP backend behind HTTP basic auth (a private repository: 401 without the token).

Both serve bare repositories from one base folder; `Remotes` builds them from a working copy.
Each server is a context manager and is stopped when its `with` block ends.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self

GIT_IDENTITY = ["-c", "user.name=musicgen-batch", "-c", "user.email=musicgen-batch@example.com"]


def git(*args: str, cwd: Path) -> str:
    result = subprocess.run(
        ["git", *GIT_IDENTITY, *args], cwd=cwd, check=True, capture_output=True, text=True
    )
    return result.stdout.strip()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Remotes:
    """A working copy `work` whose pushes go to the bare repository `base/NAME.git`."""

    def __init__(self, root: Path, name: str, files: dict[str, str]) -> None:
        self.base = root / "served"
        self.base.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.bare = self.base / f"{name}.git"
        self.work = root / f"{name}-work"
        self.work.mkdir()
        for path, text in files.items():
            (self.work / path).parent.mkdir(parents=True, exist_ok=True)
            (self.work / path).write_text(text, encoding="utf-8")
        git("init", "--quiet", "--initial-branch=main", cwd=self.work)
        git("add", "--all", cwd=self.work)
        git("commit", "--quiet", "-m", "songs", cwd=self.work)
        git("init", "--quiet", "--bare", str(self.bare), cwd=root)
        git("remote", "add", "origin", str(self.bare), cwd=self.work)
        self.push()

    def commit(self, path: str, text: str, message: str = "edit") -> str:
        (self.work / path).write_text(text)
        git("add", path, cwd=self.work)
        git("commit", "--quiet", "-m", message, cwd=self.work)
        return git("rev-parse", "HEAD", cwd=self.work)

    def push(self, ref: str = "main") -> None:
        git("push", "--quiet", "origin", ref, cwd=self.work)


def _wait_for_port(port: int, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


class GitDaemon:
    """`git daemon` serving every repository under `base` anonymously, read only."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}.git"

    def __enter__(self) -> Self:
        self.process = subprocess.Popen(
            [
                "git",
                "daemon",
                "--reuseaddr",
                "--export-all",
                "--listen=127.0.0.1",
                f"--port={self.port}",
                f"--base-path={self.base}",
                str(self.base),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # `git daemon` runs git-daemon as its child: the group ends both.
            start_new_session=True,
        )
        _wait_for_port(self.port, self.process)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


class PrivateHttpGit:
    """git-http-backend behind basic auth: 401 without `token` as the password. Records every
    Authorization header and, while an authorised request is served, the process list."""

    def __init__(self, base: Path, token: str) -> None:
        self.base = base
        self.token = token
        self.authorizations: list[str] = []
        self.process_lists: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}.git"

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def _authorized(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        self.authorizations.append(header)
        _, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return password == self.token

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        remote = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self._serve()

            def _serve(self) -> None:
                if not remote._authorized(self.headers.get("Authorization")):
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="private songs"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                remote.process_lists.append(
                    subprocess.run(
                        ["ps", "-eww", "-o", "args="], capture_output=True, text=True, check=False
                    ).stdout
                )
                path, _, query = self.path.partition("?")
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                env = {
                    **os.environ,
                    "GIT_PROJECT_ROOT": str(remote.base),
                    "GIT_HTTP_EXPORT_ALL": "1",
                    "REQUEST_METHOD": self.command,
                    "PATH_INFO": path,
                    "QUERY_STRING": query,
                    "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                    "CONTENT_LENGTH": str(len(body)),
                    "REMOTE_USER": "reader",
                    "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
                }
                cgi = subprocess.run(
                    ["git", "http-backend"], input=body, env=env, capture_output=True, check=False
                )
                head, _, payload = cgi.stdout.partition(b"\r\n\r\n")
                status = 200
                headers = []
                for line in head.decode().split("\r\n"):
                    name, _, value = line.partition(": ")
                    if name.lower() == "status":
                        status = int(value.split()[0])
                    elif name:
                        headers.append((name, value))
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler
