"""Conditional writes, leases and checkpoints on both stores: moto's S3 over HTTP and a folder;
lease writes whose answer was lost, and two processes with one worker name."""

import json
import socket

import numpy as np
import pytest
from botocore.exceptions import ConnectionClosedError
from botocore.httpsession import URLLib3Session

from contract import aws
from contract.bucket import lease_key
from contract.records import Checkpoint, Identity
from worker.store.leases import Leases
from worker.store.store import LocalStore, open_store


@pytest.fixture(params=["s3", "local"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalStore(tmp_path / "out")
    request.getfixturevalue("aws_env")
    client = aws.s3_client()
    client.create_bucket(Bucket="leases")
    return open_store("s3://leases/run", aws.s3_client)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_create_is_exclusive_and_replace_needs_the_current_version(store):
    first = store.create("k", b"one")
    assert first is not None
    assert store.create("k", b"two") is None
    assert store.read("k")[0] == b"one"
    second = store.replace("k", b"three", first)
    assert second is not None and second != first
    assert store.replace("k", b"four", first) is None
    assert store.read("k") == (b"three", second)
    assert store.replace("missing", b"x", first) is None


def test_upload_new_never_overwrites(store, tmp_path):
    wav = tmp_path / "a.wav"
    wav.write_bytes(b"RIFF-first")
    assert store.upload_new(wav, "a.wav", {"seed": "1"})
    wav.write_bytes(b"RIFF-second")
    assert not store.upload_new(wav, "a.wav", {"seed": "2"})
    assert store.read("a.wav")[0] == b"RIFF-first"
    assert store.exists("a.wav") and not store.exists("b.wav")


def test_list_and_delete(store):
    for key in [".records/b.json", ".records/a.json", "song.wav"]:
        store.write(key, b"{}")
    assert store.list(".records/") == [".records/a.json", ".records/b.json"]
    store.delete(".records/a.json")
    store.delete(".records/never-there.json")
    assert store.list(".records/") == [".records/b.json"]


def test_one_claim_wins_and_an_expired_lease_is_taken_over(store):
    clock = Clock()
    a = Leases(store, "worker-a", 60, clock)
    b = Leases(store, "worker-b", 60, clock)
    assert a.claim("song.wav")
    assert not b.claim("song.wav")
    clock.now += 30
    assert a.renew("song.wav")  # past a third: rewritten with If-Match
    clock.now += 45
    assert not b.claim("song.wav")  # renewed 45 s ago, still valid for 15 s
    clock.now += 20
    assert b.claim("song.wav")  # expired: taken over
    clock.now += 30
    assert not a.renew("song.wav")  # a lost it and knows
    b.release("song.wav")
    assert not store.exists(lease_key("song.wav"))


def test_a_worker_takes_back_its_own_lease_after_a_crash(store):
    """The lease of a process of this worker's name that is gone from this host (killed, or
    the host rebooted) is taken over at once, without waiting for it to expire."""
    clock = Clock()
    dead = f"{socket.gethostname()}:{2**31 - 1}:1"  # no such pid: kill(pid, 0) finds no process
    assert Leases(store, "host-1", 600, clock, process=dead).claim("song.wav")
    assert Leases(store, "host-1", 600, clock).claim("song.wav")
    assert not Leases(store, "host-2", 600, clock).claim("song.wav")


def test_checkpoint_round_trip_and_identity_mismatch():
    identity = Identity("abc", 180.0, "facebook/musicgen-small", 1500, 900)
    codes = np.random.default_rng(0).integers(0, 2048, size=(4, 2400))
    checkpoint = Checkpoint(identity, 7, 2, 12.5, codes)
    restored = Checkpoint.from_json(checkpoint.to_json())
    assert restored.identity == identity and (restored.seed, restored.next_window) == (7, 2)
    assert np.array_equal(restored.codes, codes)
    other = Identity("abc", 200.0, "facebook/musicgen-small", 1500, 900)
    assert other.mismatch(identity) == "duration_s was 180.0, now 200.0"
    assert identity.mismatch(identity) is None
    for bad in [b"", b"{}", b'{"format": 99}', b"\xff"]:
        with pytest.raises(ValueError):
            Checkpoint.from_json(bad)


# -- a write that went through although its answer was lost -----------------------------------


class LostAnswers:
    """Loses the answer to the next `count` lease PUTs the way a dropped connection does: the
    request reaches S3 (moto's server, over HTTP) and is applied, then botocore sees
    ConnectionClosedError, an error its retry modes retry (boto3 guide, "Retries": "General
    socket/connection errors ... ConnectionClosedError"). botocore then sends the very same
    request again, with the same If-Match or If-None-Match, and S3 answers that one 412."""

    def __init__(self, client, count: int = 1):
        self.left = count
        client.meta.events.register("before-send.s3.PutObject", self._send_then_lose)

    def _send_then_lose(self, request, **_) -> None:
        """before-send handler: None lets botocore send the request itself."""
        if "/.leases/" not in request.url or self.left == 0:
            return
        self.left -= 1
        request.reset_stream()  # its body was read for the checksum
        URLLib3Session().send(request)  # exactly what botocore would send: S3 applies it
        request.reset_stream()  # the retry sends it again
        raise ConnectionClosedError(endpoint_url=request.url)


class LostAnswerStore(LocalStore):
    """A folder that applies the next `lose` conditional lease writes and then answers as the
    retried request would: None (412), because the first attempt already changed the version."""

    lose = 0

    def replace(self, key, data, version):
        if self.lose and key.startswith(".leases/"):
            self.lose -= 1
            super().replace(key, data, version)
        return super().replace(key, data, version)

    def create(self, key, data):
        if self.lose and key.startswith(".leases/"):
            self.lose -= 1
            super().create(key, data)
        return super().create(key, data)


@pytest.fixture(params=["s3", "local"])
def losing(request, tmp_path):
    """(store, lose(n)): a store whose next n lease writes lose their answer."""
    if request.param == "local":
        store = LostAnswerStore(tmp_path / "out")
        return store, lambda n: setattr(store, "lose", n)
    request.getfixturevalue("aws_env")
    client = aws.s3_client()
    client.create_bucket(Bucket="leases")
    store = open_store("s3://leases/run", lambda: client)
    lost = []
    return store, lambda n: lost.append(LostAnswers(client, n))


def test_a_renewal_whose_answer_was_lost_keeps_the_lease(losing):
    store, lose = losing
    clock = Clock()
    mine = Leases(store, "worker-a", 60, clock)
    theirs = Leases(store, "worker-b", 60, clock)
    assert mine.claim("song.wav")
    lose(1)
    clock.now += 30
    assert mine.renew("song.wav", force=True)  # applied, its answer lost, the retry got 412
    assert mine.holds("song.wav")
    assert json.loads(store.read(lease_key("song.wav"))[0])["expires_at"] == clock.now + 60
    clock.now += 45
    assert not theirs.claim("song.wav")  # the renewal counted: still valid for 15 s
    assert mine.renew("song.wav", force=True)  # and the next renewal matches the new version


def test_a_claim_whose_answer_was_lost_is_this_workers(losing):
    store, lose = losing
    clock = Clock()
    mine = Leases(store, "worker-a", 60, clock)
    lose(1)
    assert mine.claim("song.wav")  # created, its answer lost, the retry got 412: the body is ours
    assert mine.renew("song.wav", force=True)
    assert not Leases(store, "worker-b", 60, clock).claim("song.wav")


def test_a_renewal_that_lost_the_lease_to_another_worker_still_drops_the_song(store):
    clock = Clock()
    mine = Leases(store, "worker-a", 60, clock)
    assert mine.claim("song.wav")
    clock.now += 61
    assert Leases(store, "worker-b", 60, clock).claim("song.wav")  # expired: taken over
    assert not mine.renew("song.wav", force=True) and not mine.holds("song.wav")


# -- two live processes with one worker name --------------------------------------------------


def test_a_live_process_with_the_same_worker_id_is_another_worker(store, caplog):
    """Same --worker-id, another live process (here: another Leases in this process, so its
    pid is alive; or another host, whose processes this host cannot see): its lease is not
    taken over as an earlier life; the worker says so, and takes it over only once expired."""
    clock = Clock()
    first = Leases(store, "batch-worker", 60, clock)
    second = Leases(store, "batch-worker", 60, clock)
    elsewhere = Leases(store, "batch-worker", 60, clock, process="other-host:4242:1700000000")
    assert first.claim("a.wav") and elsewhere.claim("b.wav")
    assert not second.claim("a.wav") and not second.claim("b.wav")
    assert "a.wav is held by another process with this worker's name 'batch-worker'" in caplog.text
    assert "(other-host:4242:1700000000, alive or on another host)" in caplog.text
    assert first.renew("a.wav", force=True)  # the first keeps its song
    clock.now += 61
    assert second.claim("b.wav")  # the twin on the other host stopped renewing: taken over
