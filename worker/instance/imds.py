"""The EC2 instance metadata service, the IMDSv2 way: a session token from `PUT
/latest/api/token`, sent with every read; an expired token answers 401 and is fetched again.

Used by the spot-notice watcher, the log upload (the instance id names the logs) and the
scale-in call (the instance id says which instance leaves its group).
"""

from __future__ import annotations

import urllib.error
import urllib.request

TOKEN_TTL_S = 21600
INSTANCE_ID_PATH = "/latest/meta-data/instance-id"


class Imds:
    def __init__(self, endpoint: str, timeout_s: float = 2.0) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.timeout_s = timeout_s
        self._token: str | None = None

    def _fetch_token(self) -> str:
        request = urllib.request.Request(
            f"{self.endpoint}/latest/api/token",
            method="PUT",
            headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_S)},
        )
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            return response.read().decode()

    def get(self, path: str) -> str | None:
        """The body at `path`, or None where the service answers 404 (no such item, such as no
        spot notice yet). Raises OSError (urllib.error.HTTPError for other answers) when the
        service cannot be reached or refuses."""
        for attempt in range(2):
            if self._token is None:
                self._token = self._fetch_token()
            request = urllib.request.Request(
                self.endpoint + path, headers={"X-aws-ec2-metadata-token": self._token}
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    return response.read().decode()
            except urllib.error.HTTPError as error:
                if error.code == 404:
                    return None
                if error.code == 401 and attempt == 0:
                    self._token = None  # expired: fetch a new one and ask again
                    continue
                raise
        raise AssertionError("unreachable")

    def instance_id(self) -> str | None:
        """This instance's id (`i-...`), or None when the service has none."""
        found = (self.get(INSTANCE_ID_PATH) or "").strip()
        return found or None
