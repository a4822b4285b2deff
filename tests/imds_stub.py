"""A stand-in for the EC2 instance metadata service (IMDSv2) on 127.0.0.1.

moto's server answers 500 on the spot path, so tests use this: tokens from PUT /latest/api/token,
404 on the spot notice path until `notice` is set, the instance id once `instance_id` is set
(404 before, as off EC2), and a 401 for the first token's first use
when `expire_first_token` is set (the worker must fetch a new token).

`autoscaling/target-lifecycle-state` answers `lifecycle_state` as plain text once set (404
before, as on an instance outside an Auto Scaling group). AWS documents the item in "Retrieve
the target lifecycle state through instance metadata" (Amazon EC2 Auto Scaling User Guide): the
state the instance is moving to, `InService` for a running member (the page's sample output),
`Terminated` once Auto Scaling takes it out (also Detached, Standby and the Warmed:* states).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


class ImdsStub:
    def __init__(
        self, expire_first_token: bool = False, instance_id: str | None = None, lifecycle_state: str | None = None
    ) -> None:
        self.notice: dict | None = None
        self.instance_id = instance_id
        self.lifecycle_state = lifecycle_state
        self.lifecycle_requests = 0
        self.tokens_issued = 0
        self.notice_requests = 0
        self._expire_first = expire_first_token
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def _send(self, code: int, body: bytes = b"") -> None:
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_PUT(self):
                if self.path != "/latest/api/token" or "X-aws-ec2-metadata-token-ttl-seconds" not in self.headers:
                    return self._send(400)
                stub.tokens_issued += 1
                self._send(200, f"token-{stub.tokens_issued}".encode())

            def do_GET(self):
                token = self.headers.get("X-aws-ec2-metadata-token", "")
                if not token.startswith("token-"):
                    return self._send(401)
                if self.path == "/latest/meta-data/instance-id" and stub.instance_id is not None:
                    return self._send(200, stub.instance_id.encode())
                if self.path == "/latest/meta-data/autoscaling/target-lifecycle-state":
                    stub.lifecycle_requests += 1
                    if stub.lifecycle_state is None:
                        return self._send(404)
                    return self._send(200, stub.lifecycle_state.encode())
                if self.path != "/latest/meta-data/spot/instance-action":
                    return self._send(404)
                stub.notice_requests += 1
                if stub._expire_first and token == "token-1":
                    return self._send(401)
                if stub.notice is None:
                    return self._send(404)
                self._send(200, json.dumps(stub.notice).encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def interrupt(self) -> None:
        self.notice = {"action": "stop", "time": "2026-11-29T12:00:00Z"}
