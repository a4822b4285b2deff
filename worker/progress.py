"""The progress of one round of generation: songs handled and frames generated.

On a terminal, two bars. Anywhere else (a file, a pipe, journald) a bar's carriage returns
would pile up as one endless line, so the log gets a progress line instead: when the round
starts, every PROGRESS_EVERY_S seconds, and when it ends.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self, TextIO

from tqdm import tqdm

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 60.0


def on_terminal(stream: TextIO | None = None) -> bool:
    """Whether `stream` (stderr, where bars and logs go) is a terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or already closed
        return False


class Progress:
    """Songs, and the frames every song needs in total: bars on a terminal, else log lines."""

    def __init__(
        self,
        songs: int,
        frames: int,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        every_s: float = PROGRESS_EVERY_S,
    ) -> None:
        self.total_songs, self.total_frames = songs, frames
        self.songs = self.frames_done = 0
        self._bars = None
        if on_terminal(stream):
            self._bars = (
                tqdm(total=songs, desc="songs", unit="song", position=0, file=stream),
                tqdm(total=frames, desc="frames", unit="frame", position=1, file=stream),
            )
        self._clock, self._every_s = clock, every_s
        self._logged_at = clock()

    def song_handled(self) -> None:
        """A song left the round: stored, failed, skipped or held by another worker."""
        self.songs += 1
        if self._bars:
            self._bars[0].update(1)
        self._maybe_log()

    def frames(self, count: int) -> None:
        self.frames_done += count
        if self._bars:
            self._bars[1].update(count)
        self._maybe_log()

    def _maybe_log(self) -> None:
        if not self._bars and self._clock() - self._logged_at >= self._every_s:
            self._log()

    def _log(self) -> None:
        self._logged_at = self._clock()
        share = self.frames_done / self.total_frames if self.total_frames else 1.0
        log.info(
            "progress: %d of %d songs handled, %d of %d frames (%.0f%%)",
            self.songs, self.total_songs, self.frames_done, self.total_frames, 100 * share,
        )

    def __enter__(self) -> Self:
        if not self._bars:
            self._log()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._bars:
            for bar in reversed(self._bars):
                bar.close()
        else:
            self._log()
