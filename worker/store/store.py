"""Where songs and bookkeeping go: an S3 prefix (s3_store.py) or a local folder, behind one small
interface.

Every write that decides ownership is conditional (S3 `If-None-Match` / `If-Match`, or exclusive
file creation), so several workers can share one output without a scheduler. Bookkeeping objects
are read only up to a bound, and a stored song that is not plausibly whole is set aside
(`.damaged/`) so that it can be made again.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from contract.bucket import BOOKKEEPING_LIMIT, damaged_key, is_s3_uri, parse_s3_uri
from contract.songs import Header, header_problem
from worker.store.s3_store import S3Store
from worker.store.stored import Stored, Unusable, oversized

log = logging.getLogger(__name__)


class Store(Protocol):
    def object_name(self, key: str) -> str: ...
    def uri(self, key: str) -> str: ...
    def exists(self, key: str) -> bool: ...
    def stat(self, key: str) -> Stored | None: ...
    def read(self, key: str, limit: int = BOOKKEEPING_LIMIT) -> tuple[bytes, str] | None: ...
    def write(self, key: str, data: bytes, content_type: str | None = None) -> None: ...
    def create(self, key: str, data: bytes) -> str | None: ...
    def replace(self, key: str, data: bytes, version: str) -> str | None: ...
    def upload_new(self, path: Path, key: str, metadata: dict[str, str]) -> bool: ...
    def list(self, prefix: str) -> list[str]: ...
    def delete(self, key: str) -> None: ...
    def holds(self, path: Path, key: str, metadata: dict[str, str]) -> bool: ...
    def damage(self, key: str, stored: Stored, duration_s: float) -> str | None: ...
    def set_aside(self, key: str, stored: Stored, stamp: str) -> str | None: ...
    def problem(self) -> str | None: ...


def _named(error: OSError, path: Path) -> OSError:
    """The same error, naming the file it was meant for (a failed write() names none)."""
    return OSError(error.errno, error.strerror or str(error), str(path))


def read_header(path: Path) -> Header | str:
    """The song file's header and whether its last samples decode; the decoder's reason when
    it cannot be opened. libsndfile reports a truncated WAV's real length, but a truncated
    FLAC keeps its STREAMINFO's, so the end is read too (a seek there fails)."""
    import soundfile

    try:
        song = soundfile.SoundFile(path)
    except (soundfile.LibsndfileError, RuntimeError) as error:
        return " ".join(str(error).split())
    with song:
        frames, wanted = song.frames, min(song.frames, 1024)
        try:
            song.seek(frames - wanted)
            whole = len(song.read(wanted, dtype="int16")) == wanted
        except (soundfile.LibsndfileError, RuntimeError):
            whole = False
        return Header(frames, song.samplerate, song.channels, whole)


@dataclass
class LocalStore:
    """A folder; the same guarantees as S3 through atomic renames and exclusive links."""

    root: Path

    def _path(self, key: str) -> Path:
        return self.root / key

    def object_name(self, key: str) -> str:
        return key

    def uri(self, key: str) -> str:
        return str(self._path(key))

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    @staticmethod
    def _version(stat: os.stat_result) -> str:
        # Every write lands as a new inode (rename or link of a fresh temp file).
        return f"{stat.st_ino}-{stat.st_mtime_ns}-{stat.st_size}"

    def stat(self, key: str) -> Stored | None:
        try:
            stat = self._path(key).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return Stored(stat.st_size, self._version(stat), {}) if os.path.isfile(self._path(key)) else None

    def read(self, key: str, limit: int = BOOKKEEPING_LIMIT) -> tuple[bytes, str] | None:
        """(content, version) or None; a file over `limit` bytes is named and reads as empty."""
        try:
            with self._path(key).open("rb") as handle:
                stat = os.fstat(handle.fileno())
                # A device or a file growing meanwhile can hold more than its size says.
                data = b"" if stat.st_size > limit else handle.read(limit + 1)
                if stat.st_size > limit or len(data) > limit:
                    oversized(self.uri(key), max(stat.st_size, len(data)), limit)
                    return b"", self._version(stat)
                return data, self._version(stat)
        except FileNotFoundError:
            return None

    def _staged(self, key: str, data: bytes) -> Path:
        """`data` in a fresh temp file next to `key`; on any failure (a full disk) the temp file
        is gone and the error names `key`'s file."""
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        except OSError as error:
            raise _named(error, target) from None
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            # mkstemp creates 0600; the user's umask should decide, as for any other file.
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(name, 0o666 & ~umask)
        except OSError as error:
            Path(name).unlink(missing_ok=True)
            raise _named(error, target) from None
        return Path(name)

    def write(self, key: str, data: bytes, content_type: str | None = None) -> None:
        # A file's type is its name's; content_type only matters to S3, which serves the object.
        staged = self._staged(key, data)
        try:
            os.replace(staged, self._path(key))
        except OSError as error:
            staged.unlink(missing_ok=True)
            raise _named(error, self._path(key)) from None

    def create(self, key: str, data: bytes) -> str | None:
        staged = self._staged(key, data)
        version = self._version(staged.stat())
        return version if self._link_new(staged, self._path(key)) else None

    def replace(self, key: str, data: bytes, version: str) -> str | None:
        current = self.read(key)
        if current is None or current[1] != version:
            return None
        # A rename is atomic but not a compare-and-swap: two workers replacing the same lease
        # in the same instant could both succeed. A lease is renewed by its owner only, so
        # what is left is a taker of an expired lease racing another taker.
        staged = self._staged(key, data)
        new_version = self._version(staged.stat())
        os.replace(staged, self._path(key))
        return new_version

    def upload_new(self, path: Path, key: str, metadata: dict[str, str]) -> bool:
        staged = self._staged(key, path.read_bytes())
        return self._link_new(staged, self._path(key))

    @staticmethod
    def _link_new(staged: Path, target: Path) -> bool:
        try:
            os.link(staged, target)
        except FileExistsError:
            return False
        except OSError as error:
            raise _named(error, target) from None
        finally:
            staged.unlink()
        return True

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix)
        folder = base if prefix.endswith("/") or not prefix else base.parent
        if not folder.is_dir():
            return []
        keys = []
        for path in folder.rglob("*"):
            key = path.relative_to(self.root).as_posix()
            if path.is_file() and key.startswith(prefix) and not path.name.startswith(".tmp-"):
                keys.append(key)
        return sorted(keys)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def holds(self, path: Path, key: str, metadata: dict[str, str]) -> bool:
        try:
            return self._path(key).read_bytes() == path.read_bytes()
        except FileNotFoundError:
            return False

    def damage(self, key: str, stored: Stored, duration_s: float) -> str | None:
        """Why the song file at `key` is not a whole song of `duration_s` seconds, or None."""
        header = read_header(self._path(key)) if stored.size else "empty"
        return header_problem(stored.size, header, duration_s)

    def set_aside(self, key: str, stored: Stored, stamp: str) -> str | None:
        """Move a damaged song to `.damaged/`, so it is kept and its name is free; None when
        the file changed meanwhile (another worker stored a whole song there)."""
        source, target = self._path(key), self._path(damaged_key(key, stamp))
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(source, target)
        except FileNotFoundError:
            return None
        if self._version(target.stat()) == stored.version:
            return str(target)
        # Another worker's new file was moved: it goes back, unless a third one is there now,
        # and then it stays in .damaged/ rather than being lost.
        try:
            os.link(target, source)
            target.unlink()
        except FileExistsError:
            log.warning("kept %s, stored meanwhile, in %s", key, target)
        return None

    def problem(self) -> str | None:
        """Raises Unusable when the folder cannot be written (a read-only mount): found before
        the model loads, instead of at the first lease."""
        try:
            fd, name = tempfile.mkstemp(dir=self.root, prefix=".tmp-")
        except OSError as error:
            raise Unusable(f"folder {str(self.root)!r} cannot be written: {error.strerror or error}") from None
        os.close(fd)
        os.unlink(name)
        return None


def local_path(text: str) -> Path:
    """A local path as a shell would have expanded it (`--output=~/x` reaches us unexpanded)."""
    return Path(text).expanduser()


def make_folder(path: Path, what: str) -> None:
    """Create a folder (and its parents); ValueError in one line when a file is in the way."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"{what} {str(path)!r} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"{what} {str(path)!r} cannot be created: {error.strerror or error}") from None


def open_store(output: str, s3_client_factory, access_wait_s: float | None = None) -> Store:
    """`s3://bucket/prefix` or a local folder (created if missing); ValueError if unusable.
    `access_wait_s`: how long S3's 403 is retried at the first look (None: S3Store's default)."""
    if is_s3_uri(output):
        bucket, prefix = parse_s3_uri(output)
        if not bucket:
            raise ValueError(f"output {output!r} names no bucket")
        wait = {} if access_wait_s is None else {"access_wait_s": access_wait_s}
        return S3Store(s3_client_factory(), bucket, prefix, **wait)
    root = local_path(output)
    make_folder(root, "output")
    return LocalStore(root)
