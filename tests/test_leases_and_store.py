"""Conditional writes, leases and checkpoints on both stores: moto's S3 over HTTP and a folder."""

import numpy as np
import pytest

from worker import aws
from worker.checkpoints import Checkpoint, Identity
from worker.leases import Leases, lease_key
from worker.store import LocalStore, open_store


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
    clock = Clock()
    assert Leases(store, "host-1", 600, clock).claim("song.wav")
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
