"""The output's layout (contract/bucket.py) as everything else states it: the bucket policy's
bookkeeping keys (terraform/modules/storage), and the instances' programs, which run before the
worker's code is checked out and so restate the prefixes they write."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from contract import bucket

REPO_ROOT = Path(__file__).resolve().parent.parent
STORAGE = REPO_ROOT / "terraform" / "modules" / "storage" / "main.tf"
INSTANCE_END = REPO_ROOT / "terraform" / "modules" / "worker" / "files" / "instance_end.py"


def module_constant(path: Path, name: str) -> object:
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)] == [name]:
            return ast.literal_eval(node.value)
    raise AssertionError(f"{path.name} has no constant {name}")


def test_the_bucket_policy_treats_every_bookkeeping_prefix_and_the_logs_as_bookkeeping():
    text = STORAGE.read_text()
    (listed,) = re.findall(r"for prefix in \[([^\]]*)\]", text)
    prefixes = set(re.findall(r'"([^"]+)"', listed))
    assert prefixes == {*bucket.BOOKKEEPING_PREFIXES, bucket.LOGS_PREFIX}
    for key in (bucket.REPORT_KEY, bucket.PAGE_KEY):
        assert f"${{aws_s3_bucket.this.arn}}/{key}" in text


def test_the_instances_end_program_writes_where_the_launcher_reads():
    assert module_constant(INSTANCE_END, "RECORDS") == bucket.BOOT_FAILURES_PREFIX
    assert f'f"{bucket.LOGS_PREFIX}{{instance}}-scale-in-' in INSTANCE_END.read_text()


@pytest.mark.parametrize("prefix", bucket.BOOKKEEPING_PREFIXES)
def test_every_bookkeeping_prefix_is_a_dot_folder(prefix):
    assert bucket.is_bookkeeping(prefix + "calm.wav.json")
    assert prefix.startswith(".") and prefix.endswith("/")


def test_keys_name_their_song():
    assert bucket.record_key("calm.wav") == ".records/calm.wav.json"
    assert bucket.lease_key("calm.wav") == ".leases/calm.wav.json"
    assert bucket.checkpoint_key("calm.wav") == ".checkpoints/calm.wav.json"
    assert bucket.failure_key("calm.wav") == ".failures/calm.wav.json"
    assert bucket.failure_file_name(bucket.failure_key("calm.wav")) == "calm.wav"
    assert bucket.failure_file_name(bucket.record_key("calm.wav")) is None
    assert bucket.damaged_key("calm.wav", "20261204T160000Z") == ".damaged/calm.wav.20261204T160000Z"
    assert not bucket.is_bookkeeping("calm.wav")
    assert not bucket.is_bookkeeping(bucket.LOGS_PREFIX + "i-1/worker.log")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("s3://songs", ("songs", "")),
        ("s3://songs/", ("songs", "")),
        ("S3://songs/a/b", ("songs", "a/b/")),
        ("songs/a/", ("songs", "a/")),
        ("s3://songs//a//", ("songs", "a/")),
        ("s3:///a", ("", "a/")),
    ],
)
def test_one_parser_for_the_workers_output_and_the_launchers_bucket(text, expected):
    assert bucket.parse_s3_uri(text) == expected


def test_a_bucket_that_is_no_bucket_name_is_refused_in_one_line():
    with pytest.raises(ValueError, match=r"^'' is not an S3 bucket name"):
        bucket.split_bucket("s3:///a")
    assert bucket.split_bucket("s3://songs/a") == ("songs", "a/")
