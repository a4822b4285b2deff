"""Prompts-file input that used to pass validation and fail later, or silently change meaning."""

import codecs

import pytest

from worker.cli import main
from worker.prompts import MAX_FILE_NAME_BYTES, Job, parse_prompts, read_prompts
from worker.report import SongRecord, parse_report, render_report


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
