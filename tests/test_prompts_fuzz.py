"""Bad input never crashes the worker: any text or bytes parse into jobs and named errors."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.prompts import MAX_DURATION_S, parse_prompts, read_prompts
from tests.support.examples import examples

ROOT = Path(__file__).resolve().parent.parent
field = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=30)


@settings(max_examples=examples(300), deadline=None)
@given(st.lists(st.one_of(field, st.tuples(field, field, field).map(";".join)), max_size=20))
def test_any_text_parses_into_valid_jobs_and_numbered_errors(lines):
    text = "\n".join(lines)
    result = parse_prompts(text)
    line_count = len(re.split("\r\n|\n|\r", text))  # CR alone also ends a line
    names = [job.file_name.lower() for job in result.jobs]
    assert len(names) == len(set(names))
    for job in result.jobs:
        assert job.prompt and 0 < job.duration_s <= MAX_DURATION_S
        assert job.file_name.lower().endswith(".wav") and "/" not in job.file_name
        assert not job.file_name.startswith(".") and ".." not in job.file_name
    for error in result.errors:
        assert 1 <= error.line_no <= line_count and error.reason
    numbered = sorted([j.line_no for j in result.jobs] + [e.line_no for e in result.errors])
    assert len(numbered) == len(set(numbered))


@settings(max_examples=examples(200), deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_are_read_without_crashing(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "prompts.txt"
    path.write_bytes(data)
    result = read_prompts(path)
    assert all(str(error).startswith(f"line {error.line_no}: ") for error in result.errors)


@pytest.mark.parametrize(
    ("content", "code", "expected"),
    [
        (b"", 2, "0 songs, 0 errors"),
        (b"# only\n   # comments\n\n", 2, "0 songs, 0 errors"),
        (b"\x00\x01\x02\xff\xfe binary\x00;1;x\n", 2, "0 songs, 1 errors"),
        (b"x" * 1_000_000 + b";10;huge\nfine;1;fine\n", 2, "1 songs, 1 errors"),
        (b"p;10;" + b"n" * 100_000 + b"\nfine;1;fine\n", 2, "1 songs, 1 errors"),
    ],
    # Named: an id made of a megabyte of content would go into PYTEST_CURRENT_TEST, and the
    # child's environment would pass the kernel's limit (E2BIG).
    ids=["empty", "comments", "binary", "huge-prompt", "huge-name"],
)
def test_odd_files_get_a_clear_answer(tmp_path, content, code, expected):
    path = tmp_path / "prompts.txt"
    path.write_bytes(content)
    done = subprocess.run(
        [sys.executable, "-m", "worker", "--prompts", str(path), "--check"],
        cwd=ROOT, capture_output=True, timeout=120, check=False,
    )
    assert done.returncode == code
    assert done.stdout.decode().splitlines()[-1] == expected
    assert b"Traceback" not in done.stderr
