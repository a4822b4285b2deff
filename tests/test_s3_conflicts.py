"""S3's two answers to a conditional write, against moto with a seam that injects them.

S3 answers 412 PreconditionFailed when the condition was evaluated and failed (the key
exists, the ETag changed), and 409 ConditionalRequestConflict when a concurrent request on the
key kept it from deciding: that one means "retry". moto never answers 409, so the client below
is a hand-written wrapper around a real moto client that fails chosen calls first.
"""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from contract import aws
from worker.store import s3_store
from worker.store.leases import Leases
from worker.store.s3_store import S3Store


def s3_error(status: int, code: str, operation: str) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        operation,
    )


CONFLICT = (409, "ConditionalRequestConflict")
PRECONDITION = (412, "PreconditionFailed")


class FlakyS3:
    """A real client, except that the listed calls fail with the given answers first."""

    def __init__(self, client, failures: dict[str, list[tuple[int, str]]]):
        self.client = client
        self.failures = failures
        self.calls: list[str] = []

    def __getattr__(self, name):
        method = getattr(self.client, name)

        def call(**kwargs):
            self.calls.append(name)
            queue = self.failures.get(name, [])
            if queue:
                status, code = queue.pop(0)
                raise s3_error(status, code, name)
            return method(**kwargs)

        return call


@pytest.fixture
def client(aws_env):
    real = aws.s3_client()
    real.create_bucket(Bucket="race")
    return real


def make_store(client, failures):
    flaky = FlakyS3(client, failures)
    return S3Store(flaky, "race", "run/", sleep=lambda s: None), flaky


def test_409_on_a_small_upload_is_retried_not_taken_as_already_there(client, tmp_path):
    wav = tmp_path / "a.wav"
    wav.write_bytes(b"RIFF-song")
    s3, flaky = make_store(client, {"put_object": [CONFLICT, CONFLICT]})
    assert s3.upload_new(wav, "a.wav", {"seed": "1"})
    assert flaky.calls.count("put_object") == 3
    assert client.get_object(Bucket="race", Key="run/a.wav")["Body"].read() == b"RIFF-song"


def test_409_on_complete_multipart_upload_is_retried_and_the_object_exists(client, tmp_path, monkeypatch):
    monkeypatch.setattr(s3_store, "MULTIPART_THRESHOLD", 4)
    wav = tmp_path / "big.wav"
    wav.write_bytes(b"RIFF-a-long-song")
    s3, flaky = make_store(client, {"complete_multipart_upload": [CONFLICT]})
    assert s3.upload_new(wav, "big.wav", {"seed": "1"})
    assert flaky.calls.count("create_multipart_upload") == 2  # the conflicted one was aborted
    assert "abort_multipart_upload" in flaky.calls
    assert client.get_object(Bucket="race", Key="run/big.wav")["Body"].read() == b"RIFF-a-long-song"


def test_409_that_never_clears_is_raised_so_the_spool_keeps_the_song(client, tmp_path):
    wav = tmp_path / "a.wav"
    wav.write_bytes(b"RIFF")
    s3, _ = make_store(client, {"put_object": [CONFLICT] * 10})
    with pytest.raises(ClientError):
        s3.upload_new(wav, "a.wav", {})


def test_412_counts_as_exists_only_when_a_head_confirms_it(client, tmp_path):
    wav = tmp_path / "a.wav"
    wav.write_bytes(b"RIFF")
    s3, _ = make_store(client, {"put_object": [PRECONDITION]})
    with pytest.raises(ClientError):  # nothing there: not "another worker wrote it"
        s3.upload_new(wav, "a.wav", {})
    client.put_object(Bucket="race", Key="run/a.wav", Body=b"theirs")
    s3, _ = make_store(client, {"put_object": [PRECONDITION]})
    assert not s3.upload_new(wav, "a.wav", {})


def test_lease_claim_and_renewal_survive_a_409(client):
    s3, flaky = make_store(client, {"put_object": [CONFLICT]})
    clock = iter(range(1000, 100000, 300)).__next__
    leases = Leases(s3, "worker-a", 600, clock=lambda: float(clock()))
    assert leases.claim("a.wav")
    flaky.failures["put_object"] = [CONFLICT, CONFLICT]
    assert leases.renew("a.wav")  # a 409 used to drop the song mid-generation
    assert flaky.calls.count("put_object") == 5


def test_a_lost_race_412_still_loses_the_claim(client):
    s3, _ = make_store(client, {})
    assert Leases(s3, "worker-a", 600).claim("a.wav")
    assert not Leases(s3, "worker-b", 600).claim("a.wav")


# botocore 1.35.10 added IfNoneMatch to PutObject and CompleteMultipartUpload, 1.35.69 IfMatch
# to both (checked in the wheels' S3 models; CopyObject's CopySourceIfMatch is older); boto3
# 1.35.N requires botocore 1.35.N.
FIRST_WITH_CONDITIONAL_WRITES = (1, 35, 69)


def test_boto3_floor_is_the_first_release_with_conditional_writes():
    import re
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    packer = (root / "packer" / "requirements.txt").read_text().splitlines()
    for requirement in (next(r for r in project if r.startswith("boto3")), next(r for r in packer if r.startswith("boto3"))):
        floor = re.fullmatch(r"boto3>=([\d.]+)", requirement).group(1)
        assert tuple(map(int, floor.split("."))) >= FIRST_WITH_CONDITIONAL_WRITES, requirement


def test_installed_botocore_knows_the_conditional_write_parameters(aws_env):
    model = aws.s3_client().meta.service_model
    assert "IfNoneMatch" in model.operation_model("PutObject").input_shape.members
    assert "IfMatch" in model.operation_model("PutObject").input_shape.members
    assert "IfNoneMatch" in model.operation_model("CompleteMultipartUpload").input_shape.members
    # A remade song replaces a damaged one with If-Match, in one part or several.
    assert "IfMatch" in model.operation_model("CompleteMultipartUpload").input_shape.members
    assert "CopySourceIfMatch" in model.operation_model("CopyObject").input_shape.members
