"""The progress display of one round of generation: songs handled and frames generated."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from tqdm import tqdm


class Progress:
    """Two bars on the terminal (stderr): songs, and the frames every song needs in total."""

    def __init__(self, songs: int, frames: int) -> None:
        self._songs = tqdm(total=songs, desc="songs", unit="song", position=0)
        self._frames = tqdm(total=frames, desc="frames", unit="frame", position=1)

    def song_handled(self) -> None:
        """A song left the round: stored, failed, skipped or held by another worker."""
        self._songs.update(1)

    def frames(self, count: int) -> None:
        self._frames.update(count)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._frames.close()
        self._songs.close()
