"""One run of the worker: skip what exists, generate the rest in batches, deliver, report.

The runner coordinates; each job has its module: skipping.py (which songs are left), delivery.py
(spool -> store -> record), resume.py (checkpoints), attempts.py (failure counts and retries),
progress.py (the bars), report.py and page.py (the cost report and the listening page).

A run ends when every song is done (stored, or failed `max_attempts` times across workers) or
held by a worker shown to be alive. A song whose generation failed goes back into the batch,
after the others, until its attempts (counted across workers) reach `max_attempts`, so one
worker alone makes every attempt. When only songs under other workers' live leases are left,
the worker waits at most about one lease period: a holder that renews its lease meanwhile is
alive, and its song is left to it (so no GPU idles while another finishes the batch's tail); a
lease nobody renews expires and is taken over here, and the song resumed from its checkpoint.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from contract.prompts import Job
from worker.engine.generation import song_seed
from worker.output.page import write_page
from worker.output.report import write_report
from worker.progress import Progress
from worker.run.attempts import Attempts
from worker.run.delivery import Delivery, now
from worker.run.results import RunResult
from worker.run.resume import Resume
from worker.run.scheduler import BatchScheduler, Callbacks, Song, new_song
from worker.run.skipping import Skipping
from worker.settings import RunSettings
from worker.store.leases import Heartbeat, Leases, poll_interval
from worker.store.store import Store

if TYPE_CHECKING:
    import numpy as np

    from worker.engine.engine import Engine

log = logging.getLogger(__name__)


class ModelUnavailable(Exception):
    """The model could not be loaded (raised by the engine loader given to `run_batch`)."""


@dataclass(frozen=True)
class NextRound:
    todo: list[Job]  # the songs to look at again ([]: the run is over)
    wait: bool  # pause first: every song left is held by another worker


def renewed(first_seen: dict[str, str], seen: dict[str, tuple[str, str]], held: Iterable[str]) -> dict[str, str]:
    """The held songs whose lease was rewritten since the wait began (`first_seen`: file ->
    the lease's version first read then; `seen`: file -> (owner, version) last read), with
    their holders: a live worker wrote each (its renewal, or a new claim)."""
    return {
        name: seen[name][0]
        for name in held
        if name in first_seen and name in seen and seen[name][1] != first_seen[name]
    }


def next_round(jobs: list[Job], retry: Iterable[str], elsewhere: Iterable[str]) -> NextRound:
    """After a round: failed songs with attempts left go again at once, with the songs other
    workers hold looked at again alongside; with none to retry, the songs held elsewhere are
    waited for; with neither, the run is over."""
    retry, elsewhere = set(retry), set(elsewhere)
    again = retry | elsewhere
    return NextRound([job for job in jobs if job.file_name in again], wait=not retry and bool(elsewhere))


class Runner:
    def __init__(
        self, settings: RunSettings, store: Store, should_stop=lambda: False, earlier_self=lambda owner: False
    ) -> None:
        self.settings = settings
        self.store = store
        self.should_stop = should_stop
        self.leases = Leases(store, settings.worker_id, settings.lease_s, earlier_self=earlier_self)
        self.result = RunResult()
        self.poll_s = poll_interval(settings.lease_s)
        self.attempts = Attempts(store, settings.worker_id, settings.max_attempts, self.result)
        self.delivery = Delivery(settings, store, self.leases, self.attempts, self.result)
        self.skipping = Skipping(store, self.attempts, self.result, self.delivery.spool)
        self.resume = Resume(store, settings.model, settings.window)

    def upload_spooled(self, jobs: list[Job]) -> None:
        self.delivery.upload_spooled(jobs)

    def run_batch(self, jobs: list[Job], load_engine: Callable[[], Engine]) -> None:
        """Generate every missing song, try again the songs whose generation failed while they
        have attempts left, then look at the songs other workers hold until each is done
        (stored by them, or failed for good), taken over here once its lease expires, or left
        to its holder once the holder renewed its lease. The engine loads only when there is
        something to generate."""
        engine: Engine | None = None
        todo, waiting_for = jobs, set()
        first_seen: dict[str, str] = {}  # held song -> its lease's version when the wait began
        while todo:
            self.result.elsewhere = []
            pending = self.skipping.pending_jobs(todo, self.delivery.foreign_spool)
            self.result.retry = []
            if pending and self.should_stop():
                self.result.unfinished += [job.file_name for job in pending]
                return
            if pending:
                engine = engine or load_engine()
                self.generate(pending, engine)
            if self.result.unfinished:
                return
            following = next_round(jobs, self.result.retry, self.result.elsewhere)
            todo = following.todo
            if not following.wait:
                continue
            held = set(self.result.elsewhere)
            for name in held & self.leases.seen.keys():
                first_seen.setdefault(name, self.leases.seen[name][1])
            alive = renewed(first_seen, self.leases.seen, held)
            if set(alive) == held:
                self._leave(alive)
                return
            if held != waiting_for:
                log.info(
                    "waiting for %d songs other workers hold (%s); looking again every %g s",
                    len(held), ", ".join(sorted(held)), self.poll_s,
                )
            waiting_for = held
            if self._pause(self.poll_s):
                self.result.unfinished += sorted(held)
                return

    def _leave(self, holders: dict[str, str]) -> None:
        """End this worker's batch: every song left is held by a worker that renewed its lease."""
        self.result.left_to = dict(sorted(holders.items()))
        for name, owner in self.result.left_to.items():
            log.info(
                "left %s to %s, which renews its lease: it stores the song, or if it stops, a "
                "worker that takes the lease over resumes its checkpoint", name, owner,
            )

    def _pause(self, seconds: float) -> bool:
        """Sleep, waking early to stop; True if asked to stop."""
        deadline = time.monotonic() + seconds
        while not self.should_stop():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(left, 0.2))
        return True

    def generate(self, jobs: list[Job], engine: Engine) -> None:
        songs = [
            new_song(job, song_seed(self.settings.seed, job), self.settings.window, engine) for job in jobs
        ]
        window_frames, _ = self.settings.window.frames(engine.frame_rate)
        batch_size = self.settings.batch_size or engine.auto_batch_size(window_frames)
        log.info("%d songs to generate, up to %d at a time", len(songs), batch_size)
        started_at = now()
        with Progress(len(songs), sum(song.total_frames for song in songs)) as progress:

            def claim(song: Song) -> bool:
                name = song.job.file_name
                if not self.leases.claim(name):
                    self.result.elsewhere.append(name)
                    progress.song_handled()
                    return False
                if self.store.exists(name):  # finished by another worker since we looked
                    log.info("skipped %s: another worker finished it", name)
                    self.leases.release(name)
                    self.result.skipped.append(name)
                    progress.song_handled()
                    return False
                if self.attempts.gave_up(song.job):  # failed for good by another worker since we looked
                    self.leases.release(name)
                    progress.song_handled()
                    return False
                self.resume.resume(song, engine)
                progress.frames(song.codes.shape[-1])
                return True

            def still_ours(song: Song) -> bool:
                """False once the heartbeat lost the lease: the taker resumes the song from
                its checkpoint and stores it; this worker waits for it like for any other."""
                if self.leases.holds(song.job.file_name):
                    return True
                self.result.elsewhere.append(song.job.file_name)
                progress.song_handled()
                return False

            def on_window(song: Song) -> bool:
                if not still_ours(song):
                    return False
                self.resume.save(song, engine)
                return True

            def on_done(song: Song, audio: np.ndarray) -> None:
                if still_ours(song):
                    self.delivery.deliver(song, audio, engine, started_at)
                    progress.song_handled()

            def on_failed(song: Song, error: BaseException) -> None:
                self.attempts.record_failure(song.job, error)
                if self.leases.holds(song.job.file_name):
                    self.leases.release(song.job.file_name)
                progress.song_handled()

            callbacks = Callbacks(
                claim=claim,
                on_window=on_window,
                on_done=on_done,
                on_failed=on_failed,
                should_stop=self.should_stop,
                on_frames=progress.frames,
            )
            with Heartbeat(self.leases):
                unfinished = BatchScheduler(engine, batch_size, callbacks).run(songs)
        for song in unfinished:
            name = song.job.file_name
            self.result.unfinished.append(name)
            if not self.leases.holds(name):
                continue
            if song.next_window:
                self.resume.save(song, engine)
                self.result.saved.append(name)
                log.info("saved %s at window %d of %d for the next run", name, song.next_window, len(song.plans))
            self.leases.release(name)

    def write_report(self, jobs: list[Job]) -> None:
        """The cost report and the listening page, from every record in the output."""
        records = write_report(self.store, [job.file_name for job in jobs])
        write_page(self.store, jobs, records, self.result.why_failed)
