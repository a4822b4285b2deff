"""Prompts-file input that used to pass validation and fail later, or silently change meaning."""

import codecs
import errno
import os
import resource
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from contract.prompts import (
    MAX_FILE_NAME_BYTES,
    MAX_PROMPTS_BYTES,
    Job,
    parse_prompts,
    read_prompts,
)
from contract.records import SongRecord
from worker.cli import main
from worker.output.report import parse_report, render_report

ROOT = Path(__file__).resolve().parent.parent


def errors(text):
    return [str(e) for e in parse_prompts(text).errors]


def test_file_name_is_limited_in_utf8_bytes_not_characters():
    ninety_cjk = "曲" * 90  # 90 characters, 270 bytes: too long for a file system
    assert errors(f"p;10;{ninety_cjk}\n") == [f"line 1: file name is longer than {MAX_FILE_NAME_BYTES} bytes in UTF-8"]
    fits = "曲" * 64  # 192 bytes + ".wav"
    assert parse_prompts(f"p;10;{fits}\n").jobs[0].file_name == fits + ".wav"


def test_long_cjk_name_is_a_line_error_in_check_not_a_crash_later(tmp_path, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("p;10;" + "曲" * 90 + "\nok;1;ok\n", encoding="utf-8")
    assert main(["--prompts", str(prompts), "--check"]) == 2
    assert "line 1: file name is longer than 200 bytes in UTF-8" in capsys.readouterr().err


def test_cr_only_line_endings_split_lines():
    assert parse_prompts("a;1;a\rb;1;b\r").jobs == [Job(1, "a", 1, "a.wav"), Job(2, "b", 1, "b.wav")]
    assert parse_prompts("a;1;a\r\n\rb;1;b\n").jobs == [Job(1, "a", 1, "a.wav"), Job(3, "b", 1, "b.wav")]


@pytest.mark.parametrize("duration", ["1e-9", "0.5", "0.999"])
def test_duration_under_one_second_is_a_line_error(duration):
    assert errors(f"p;{duration};x\n") == [f"line 1: duration {duration!r} is under the minimum of 1 s"]


@pytest.mark.parametrize(("written", "shown"), [("123.456789", "123.456789"), ("180", "180"), ("1.0000001", "1.0000001")])
def test_report_keeps_the_requested_duration_as_written(written, shown):
    job = parse_prompts(f"p;{written};x\n").jobs[0]
    record = SongRecord("x.wav", "p", job.duration_s, 1.0, 0.1, "x.wav", 1, "m", 1, 1, "a", "b", "w")
    assert parse_report(render_report([record]))[0]["requested_duration_s"] == shown


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_utf16_prompts_file_with_a_bom_is_decoded(tmp_path, codec):
    path = tmp_path / "p.txt"
    bom = codecs.BOM_UTF16_LE if codec.endswith("le") else codecs.BOM_UTF16_BE
    path.write_bytes(bom + "piano ♪;10;piano\r\ndrums;5;drums\r\n".encode(codec))
    result = read_prompts(path)
    assert result.errors == []
    assert result.jobs == [Job(1, "piano ♪", 10, "piano.wav"), Job(2, "drums", 5, "drums.wav")]


def test_utf16_without_a_bom_says_save_as_utf8_once(tmp_path):
    path = tmp_path / "p.txt"
    path.write_bytes("piano;10;piano\ndrums;5;drums\n".encode("utf-16-le"))
    assert [str(e) for e in read_prompts(path).errors] == [
        "line 1: the file looks like UTF-16 without a byte order mark; save it as UTF-8"
    ]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("CON.wav", "file name 'CON.wav' is a device name on Windows"),
        ("con", "file name 'con.wav' is a device name on Windows"),
        ("lpt1.wav", "file name 'lpt1.wav' is a device name on Windows"),
        ("nul.tar.wav", "file name 'nul.tar.wav' is a device name on Windows"),
        ("a:b.wav", "file name 'a:b.wav' must not contain : (Windows cannot hold them)"),
        ("a*b?.wav", "file name 'a*b?.wav' must not contain * ? (Windows cannot hold them)"),
        ('a"<b>|.wav', "file name 'a\"<b>|.wav' must not contain \" < > | (Windows cannot hold them)"),
        ("trailing.", "file name 'trailing.' must not end with a dot or a space (Windows cannot hold it)"),
        ("song.wav.", "file name 'song.wav.' must not end with a dot or a space (Windows cannot hold it)"),
    ],
)
def test_names_windows_cannot_hold_are_line_errors(name, reason):
    assert errors(f"p;10;{name}\n") == [f"line 1: {reason}"]


def test_console_and_conference_are_ordinary_names():
    assert [j.file_name for j in parse_prompts("p;1;console\nq;1;conference.wav\n").jobs] == [
        "console.wav", "conference.wav",
    ]


@pytest.mark.parametrize("prompt", ["bell\x07 song", "nul\x00", "esc\x1b[31m", "del\x7f", "c1\x85next"])
def test_control_characters_in_prompts_are_line_errors(prompt):
    assert errors(f"{prompt};10;x\n") == ["line 1: prompt contains control characters (only tab is allowed)"]


def test_tab_in_a_prompt_is_allowed():
    assert parse_prompts("soft\tpiano;10;x\n").jobs[0].prompt == "soft\tpiano"


@pytest.mark.parametrize("prompt", ["=HYPERLINK(\"http://x\")", "+1", "-2 drums", "@SUM(A1)"])
def test_spreadsheet_formulas_in_the_report_are_text(prompt):
    record = SongRecord("x.wav", prompt, 1, 1.0, 0.1, "x.wav", 1, "m", 1, 1, "a", "b", "w")
    assert parse_report(render_report([record]))[0]["prompt"] == "'" + prompt


# -- the size of a prompts file, digits, quoting ----------------------------------------------


def test_a_prompts_file_over_the_limit_is_refused_in_one_line(tmp_path, capsys):
    path = tmp_path / "p.txt"
    line = b"calm piano;10;calm\n"
    path.write_bytes(line * (MAX_PROMPTS_BYTES // len(line) + 1))
    assert main(["--prompts", str(path), "--check"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"error: cannot read prompts file {str(path)!r}: larger than 4 MiB, the most a prompts file may hold\n"


def test_a_fifo_is_read_up_to_the_limit_and_no_further(tmp_path):
    """A FIFO never ends while its writer writes: the reader stops one byte past the limit and
    closes it, and the writer's next write fails with EPIPE (pipe(7): a write to a pipe whose
    read end is closed gets SIGPIPE/EPIPE; Python ignores SIGPIPE, so it is BrokenPipeError)."""
    fifo = tmp_path / "prompts.fifo"
    os.mkfifo(fifo)
    written = []

    def writer():
        chunk = b"calm piano;10;calm\n" * 3000
        try:
            with open(fifo, "wb", buffering=0) as pipe:
                for _ in range(10 * MAX_PROMPTS_BYTES // len(chunk)):
                    written.append(pipe.write(chunk))
        except BrokenPipeError:
            pass

    thread = threading.Thread(target=writer, daemon=True)  # never outlives the test if the read fails
    thread.start()
    with pytest.raises(OSError) as refused:
        read_prompts(fifo)
    thread.join(timeout=60)
    assert refused.value.errno == errno.EFBIG
    # What the reader took, plus at most what the pipe's buffer (64 KiB) and one chunk hold.
    assert sum(written) <= MAX_PROMPTS_BYTES + (1 << 20)


@pytest.mark.slow
def test_dev_zero_is_refused_in_one_line_without_filling_the_memory(tmp_path):
    """The worker in its own process, its address space capped at 2 GiB (setrlimit(2),
    RLIMIT_AS): reading /dev/zero whole would end in a MemoryError traceback."""
    done = subprocess.run(
        [sys.executable, "-m", "worker", "--prompts", "/dev/zero", "--check"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30)),
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == "error: cannot read prompts file '/dev/zero': larger than 4 MiB, the most a prompts file may hold\n"


@pytest.mark.parametrize(
    ("duration", "reason"),
    [
        ("１０", "duration '１０' is not a number of seconds: write it with the digits 0-9"),
        ("٥", "duration '٥' is not a number of seconds: write it with the digits 0-9"),
        ("1_0", "duration '1_0' is not a number of seconds"),
        ("0x10", "duration '0x10' is not a number of seconds"),
    ],
)
def test_durations_are_ascii_decimals(duration, reason):
    assert errors(f"p;{duration};x\nfine;2;fine\n") == [f"line 1: {reason}"]


@pytest.mark.parametrize("written", ["10", "+10", "10.", ".1e2", "1e1", " 10 "])
def test_every_ascii_decimal_form_is_a_duration(written):
    assert parse_prompts(f"p;{written};x\n").jobs[0].duration_s == 10


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        ("p;" + "x" * 1_000_000 + ";x", "duration '" + "x" * 200 + "'... (1000000 characters) is not"),
        ("p;10;\x07" + "n" * 1_000_000, "file name '\\x07" + "n" * 199 + "'... (1000001 characters) contains"),
    ],
)
def test_a_huge_field_is_quoted_shortened_with_its_length(line, shown):
    (error,) = errors(line + "\n")
    assert error.startswith(f"line 1: {shown}")
    assert len(error) < 400


@pytest.mark.parametrize("content", ["", "# only a comment\n\n   \n"])
def test_check_on_a_file_without_songs_says_why(tmp_path, capsys, content):
    path = tmp_path / "p.txt"
    path.write_text(content)
    assert main(["--prompts", str(path), "--check"]) == 2
    out, err = capsys.readouterr()
    assert out == "0 songs, 0 errors\n"
    assert err == (
        f"error: no valid song in {path}: it has only blank and comment lines; "
        "a song is one line PROMPT ; DURATION_S ; FILE_NAME\n"
    )


def test_check_on_a_file_whose_every_song_is_bad_says_so(tmp_path, capsys):
    path = tmp_path / "p.txt"
    path.write_text("p;ten;x\n")
    assert main(["--prompts", str(path), "--check"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"{path} line 1: duration 'ten' is not a number of seconds",
        f"error: no valid song in {path}: every song line has an error (listed above)",
    ]
