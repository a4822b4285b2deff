import pytest

from contract.prompts import MAX_DURATION_S, Job, parse_prompts, read_prompts


@pytest.mark.parametrize(
    ("line", "prompt", "duration", "file_name"),
    [
        ("cinematic trailer music with epic drums;180;cinema.wav", "cinematic trailer music with epic drums", 180, "cinema.wav"),
        ("  lofi beat ; 90.5 ; lofi  ", "lofi beat", 90.5, "lofi.wav"),
        ("a; b ;c;30;semi", "a; b ;c", 30, "semi.wav"),
        ("jazz, \"smoky\" bar;1e2;jazz.WAV", 'jazz, "smoky" bar', 100, "jazz.WAV"),
        ("piano;1;tiny", "piano", 1, "tiny.wav"),  # the minimum duration
        (f"max;{MAX_DURATION_S:g};max.wav", "max", MAX_DURATION_S, "max.wav"),
        ("ünïcödé 🎵;10;ümlaut", "ünïcödé 🎵", 10, "ümlaut.wav"),
    ],
)
def test_good_lines(line, prompt, duration, file_name):
    result = parse_prompts(line + "\n")
    assert result.errors == []
    assert result.jobs == [Job(1, prompt, duration, file_name)]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("no separators at all", "expected 'PROMPT ; DURATION_S ; FILE_NAME'"),
        ("prompt;10", "expected 'PROMPT ; DURATION_S ; FILE_NAME'"),
        (" ;10;x.wav", "prompt is empty"),
        ("p;ten;x.wav", "duration 'ten' is not a number of seconds"),
        ("p;;x.wav", "duration '' is not a number of seconds"),
        ("p;0;x.wav", "duration '0' must be a positive number of seconds"),
        ("p;-5;x.wav", "duration '-5' must be a positive number of seconds"),
        ("p;nan;x.wav", "duration 'nan' must be a positive number of seconds"),
        ("p;inf;x.wav", "duration 'inf' must be a positive number of seconds"),
        ("p;1801;x.wav", "duration '1801' is over the maximum of 1800 s"),
        ("p;10;", "file name is empty"),
        ("p;10;dir/x.wav", "file name 'dir/x.wav' must not contain '/' or '\\'"),
        ("p;10;dir\\x.wav", "file name 'dir\\\\x.wav' must not contain '/' or '\\'"),
        ("p;10;a..b.wav", "file name 'a..b.wav' must not contain '..'"),
        ("p;10;.hidden.wav", "file name '.hidden.wav' must not start with '.'"),
        ("p;10;bell\x07.wav", "file name 'bell\\x07.wav' contains control characters"),
        ("p;10;" + "x" * 200, "file name is longer than 200 characters"),
        ("p" * 2001 + ";10;x", "prompt is longer than 2000 characters"),
    ],
)
def test_bad_lines_name_line_and_reason(line, reason):
    text = "# header comment\n\n" + line + "\nfine;5;fine.wav\n"
    result = parse_prompts(text)
    assert [str(e) for e in result.errors] == [f"line 3: {reason}"]
    assert result.jobs == [Job(4, "fine", 5, "fine.wav")]


def test_comments_blank_lines_crlf_and_bom():
    text = "\ufeff# a comment\r\n   # indented comment\r\n\r\n   \r\nsong;12;one\r\n"
    assert parse_prompts(text).jobs == [Job(5, "song", 12, "one.wav")]


def test_duplicate_file_names_are_an_error_on_the_later_line():
    result = parse_prompts("a;1;song\nb;2;song.wav\nc;3;SONG.wav\n")
    assert [j.line_no for j in result.jobs] == [1]
    assert [str(e) for e in result.errors] == [
        "line 2: file name 'song.wav' is already used on line 1",
        "line 3: file name 'SONG.wav' is already used on line 1",
    ]


def test_form_feed_does_not_shift_line_numbers():
    result = parse_prompts("a\x0cb;1;x\nbad\n")
    # The form feed stays on line 1 (where a control character in a prompt is an error).
    assert [str(e) for e in result.errors] == [
        "line 1: prompt contains control characters (only tab is allowed)",
        "line 2: expected 'PROMPT ; DURATION_S ; FILE_NAME'",
    ]


def test_read_prompts_reports_undecodable_lines_and_keeps_the_rest(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_bytes(b"\xef\xbb\xbfgood;1;a\nbad \xff\xfe;1;b\nalso good;2;c\r\n")
    result = read_prompts(path)
    assert [j.file_name for j in result.jobs] == ["a.wav", "c.wav"]
    assert [str(e) for e in result.errors] == ["line 2: line is not valid UTF-8"]


def test_read_prompts_missing_file_raises(tmp_path):
    with pytest.raises(OSError):
        read_prompts(tmp_path / "nope.txt")


@pytest.mark.parametrize(
    ("audio_format", "name", "expected"),
    [
        ("wav", "song", "song.wav"),
        ("wav", "Song.WAV", "Song.WAV"),
        ("flac", "song", "song.flac"),
        ("flac", "song.flac", "song.flac"),
        ("flac", "song.FLAC", "song.FLAC"),
        ("flac", "take.2", "take.2.flac"),
    ],
)
def test_the_extension_follows_the_format(audio_format, name, expected):
    assert parse_prompts(f"p;1;{name}\n", audio_format).jobs == [Job(1, "p", 1, expected)]


@pytest.mark.parametrize(
    ("audio_format", "name", "reason"),
    [
        ("flac", "x.wav", "file name 'x.wav' ends in .wav, but the format is flac"),
        ("flac", "x.Wav", "file name 'x.Wav' ends in .wav, but the format is flac"),
        ("wav", "x.flac", "file name 'x.flac' ends in .flac, but the format is wav"),
    ],
)
def test_a_name_with_the_other_formats_extension_is_an_error_on_its_line(audio_format, name, reason):
    result = parse_prompts(f"good;1;a\np;1;{name}\n", audio_format)
    assert [str(e) for e in result.errors] == [f"line 2: {reason}"]
    assert [j.file_name for j in result.jobs] == [f"a.{audio_format}"]
