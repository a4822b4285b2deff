"""Bars on a terminal, progress lines in a log: in this process with a fake clock, and in real
worker processes whose stderr is a pseudo-terminal or a pipe."""

from __future__ import annotations

import fcntl
import io
import logging
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
from pathlib import Path

import pytest

from worker.progress import Progress

ROOT = Path(__file__).resolve().parent.parent


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def progress_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("progress: ")]


def test_a_log_gets_a_line_at_the_start_every_interval_and_at_the_end(caplog):
    stream, clock = io.StringIO(), Clock()
    with (
        caplog.at_level(logging.INFO, logger="worker.progress"),
        Progress(3, 300, stream=stream, clock=clock, every_s=60) as progress,
    ):
        clock.now = 10
        progress.frames(100)  # within the interval: no line
        clock.now = 61
        progress.frames(50)
        clock.now = 70
        progress.song_handled()
        clock.now = 125
        progress.song_handled()
    assert stream.getvalue() == ""  # no bar
    assert progress_lines(caplog) == [
        "progress: 0 of 3 songs handled, 0 of 300 frames (0%)",
        "progress: 0 of 3 songs handled, 150 of 300 frames (50%)",
        "progress: 2 of 3 songs handled, 150 of 300 frames (50%)",
        "progress: 2 of 3 songs handled, 150 of 300 frames (50%)",
    ]


def test_a_terminal_gets_bars_and_no_progress_lines(caplog):
    stream, clock = Terminal(), Clock()
    with (
        caplog.at_level(logging.INFO, logger="worker.progress"),
        Progress(2, 100, stream=stream, clock=clock, every_s=60) as progress,
    ):
        clock.now = 500
        progress.frames(100)
        progress.song_handled()
    shown = stream.getvalue()
    assert re.search(r"frames: 100%\|[^|]*\| 100/100", shown), shown
    assert re.search(r"songs:  50%\|[^|]*\| 1/2", shown), shown
    assert progress_lines(caplog) == []


# -- real processes ---------------------------------------------------------------------------


def worker_command(tmp_path: Path, model: Path) -> list[str]:
    prompts = tmp_path / "p.txt"
    prompts.write_text("calm piano;2;calm\n")
    return [
        sys.executable, "-m", "worker", "--prompts", str(prompts), "--output", str(tmp_path / "out"),
        "--spool-dir", str(tmp_path / "spool"), "--model", str(model), "--threads", "1",
        "--window-s", "1", "--stride-s", "0.5",
    ]


def run_on_a_terminal(command: list[str]) -> tuple[int, str]:
    """The command with its stderr on a pseudo-terminal (pty(7)) of 120 x 24 (tty_ioctl(4),
    TIOCSWINSZ): isatty() is true there, as on a user's terminal. Its output is drained while it
    runs, so a full buffer never blocks it."""
    master, slave = pty.openpty()
    # A new pseudo-terminal is 0 columns wide; a user's is not (tqdm sizes its bars to it).
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    process = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 1 << 16)
            except OSError:  # Linux answers EIO once no process holds the terminal's other side
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain)
    reader.start()
    code = process.wait(timeout=300)
    reader.join(timeout=60)
    os.close(master)
    return code, b"".join(chunks).decode(errors="replace")


@pytest.mark.slow
def test_a_worker_on_a_terminal_shows_bars(tmp_path, tiny_model_dir, project_on_pythonpath):
    code, shown = run_on_a_terminal(worker_command(tmp_path, tiny_model_dir))
    assert code == 0, shown
    assert re.search(r"songs: 100%\|[^|]*\| 1/1", shown), shown
    assert re.search(r"frames: 100%\|[^|]*\| 100/100", shown), shown
    assert "progress: " not in shown


@pytest.fixture(scope="module")
def piped(tmp_path_factory, tiny_model_dir):
    """One worker run whose stderr is a pipe, as under systemd (journald) or `2> log`."""
    tmp_path = tmp_path_factory.mktemp("piped")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run(
        worker_command(tmp_path, tiny_model_dir), cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=300, check=False,
    )


@pytest.mark.slow
def test_a_worker_in_a_log_writes_progress_lines_and_no_bars(piped):
    assert piped.returncode == 0, piped.stderr
    assert "\r" not in piped.stderr
    assert "%|" not in piped.stderr  # neither the worker's bars nor transformers' "Loading weights"
    lines = [line.split(" INFO ", 1)[1] for line in piped.stderr.splitlines() if " INFO progress: " in line]
    assert lines == [
        "progress: 0 of 1 songs handled, 0 of 100 frames (0%)",
        "progress: 1 of 1 songs handled, 100 of 100 frames (100%)",
    ]


@pytest.mark.slow
def test_loading_the_tiny_model_warns_of_nothing(piped):
    """MusicGen's pad/start tokens sit one past the codebook by design; the worker's log does
    not warn of them (see worker/engine/hf_output.py)."""
    assert "token_id" not in piped.stderr
    assert "WARNING" not in piped.stderr
