"""Workers that finish the batch together: the done/wait/take-over/give-up rule, failed attempts
counted across workers, the lease heartbeat, and waiting for songs other workers hold."""

from __future__ import annotations

import json
import os
import threading
import time

import numpy as np
import pytest
import soundfile

# The worker's device check imports torch before it claims anything: imported here first, so a
# worker started in-process claims within the test's sub-second leases, not seconds later.
import torch  # noqa: F401

from contract import aws
from contract.bucket import failure_key, lease_key
from contract.policy import blocks, failures_by_song, is_given_up
from contract.prompts import Job, prompt_hash
from contract.records import Failure
from tests.engines import FakeEngine
from tests.support.worker_process import fake_systemctl
from worker.cli import main
from worker.output.report import parse_report
from worker.run.attempts import Attempts, count_failure, read_failure
from worker.run.results import RunResult
from worker.run.skipping import Skipping
from worker.store.leases import Heartbeat, Leases, poll_interval
from worker.store.store import LocalStore, open_store


@pytest.fixture(params=["s3", "local"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalStore(tmp_path / "out")
    request.getfixturevalue("aws_env")
    aws.s3_client().create_bucket(Bucket="fleet")
    return open_store("s3://fleet/run", aws.s3_client)


# -- the rule --------------------------------------------------------------------------------

NOW = 1000.0


@pytest.mark.parametrize(
    ("attempts", "expected"),
    [
        (2, True),
        (3, True),
        (0, False),
        (1, False),  # one failure of two: tried again
    ],
)
def test_a_song_is_given_up_after_max_attempts_counted_for_its_prompt(attempts, expected):
    failure = Failure("a.wav", "h", attempts, "E", "b", "t")
    assert is_given_up(failure, "h", 2) is expected
    assert is_given_up(failure, "other prompt", 2) is False
    assert is_given_up(None, "h", 2) is False


@pytest.mark.parametrize(
    ("expires_at", "ours", "keeps_off"),
    [
        (NOW + 60, False, True),  # another worker's live lease: wait
        (NOW + 0.001, False, True),
        (NOW, False, False),  # not renewed within its TTL: take it over
        (NOW - 300, False, False),
        (NOW + 60, True, False),  # ours, from an earlier life
        (0.0, False, False),  # unreadable lease (records.ABANDONED)
    ],
)
def test_a_lease_keeps_a_worker_off_its_song_while_another_worker_renews_it(expires_at, ours, keeps_off):
    assert blocks(expires_at, NOW, ours) is keeps_off


@pytest.mark.parametrize("attempts", [0, 5])
def test_a_stored_song_is_done_whatever_its_failure_count(tmp_path, attempts):
    """The stored file wins over any count: the song is skipped, not given up nor generated."""
    store = LocalStore(tmp_path / "out")
    job = Job(1, "calm piano", 1.0, "calm.wav")
    (tmp_path / "out").mkdir()
    soundfile.write(tmp_path / "out" / "calm.wav", np.zeros(32000, dtype=np.float32), 32000, subtype="PCM_16")
    if attempts:
        failure = Failure(job.file_name, job.prompt_hash, attempts, "E", "b", "t")
        store.write(failure_key(job.file_name), failure.to_json())
    result = RunResult()
    skipping = Skipping(store, Attempts(store, "a", 2, result), result, tmp_path / "spool")
    assert skipping.pending_jobs([job], set()) == []
    assert (result.skipped, result.given_up) == (["calm.wav"], {})


@pytest.mark.parametrize(("ttl", "poll"), [(120, 10), (30, 10), (9, 3), (3, 1), (0.6, 0.2)])
def test_a_waiting_worker_polls_within_a_third_of_the_ttl_and_at_most_every_10_s(ttl, poll):
    assert poll_interval(ttl) == pytest.approx(poll)


# -- failed attempts, counted across workers ------------------------------------------------


def test_failures_add_up_across_workers_and_a_changed_line_starts_again(store):
    h = prompt_hash("calm piano")
    assert count_failure(store, "calm.wav", h, "RuntimeError: out of memory", "worker-a") == 1
    assert count_failure(store, "calm.wav", h, "RuntimeError:\n  again", "worker-b") == 2
    failure = read_failure(store, "calm.wav")
    assert (failure.attempts, failure.error, failure.worker) == (2, "RuntimeError: again", "worker-b")
    assert count_failure(store, "calm.wav", prompt_hash("calm organ"), "E", "worker-a") == 1


def test_concurrent_failures_are_all_counted(store):
    h = prompt_hash("p")
    threads = [
        threading.Thread(target=count_failure, args=(store, "x.wav", h, "E", f"w{i}")) for i in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if isinstance(store, LocalStore):  # a rename is no compare-and-swap (see store.py)
        assert 1 <= read_failure(store, "x.wav").attempts <= 4
    else:
        assert read_failure(store, "x.wav").attempts == 4


def test_given_up_reads_listed_failures_without_io():
    def body(name, attempts):
        return Failure(name, "h", attempts, "E: " + name, "w", "t").to_json()

    objects = [
        (failure_key("a.wav"), body("a.wav", 2)),
        (failure_key("b.wav"), body("b.wav", 1)),
        (failure_key("c.wav"), b"{not json"),
        (failure_key("d.wav"), json.dumps({"attempts": "2"}).encode()),
        (".records/e.wav.json", body("e.wav", 9)),
    ]
    counts = failures_by_song(objects)
    assert {name: f.error for name, f in counts.items()} == {"a.wav": "E: a.wav", "b.wav": "E: b.wav"}
    assert {name for name, f in counts.items() if is_given_up(f, "h", 2)} == {"a.wav"}
    assert {name for name, f in counts.items() if is_given_up(f, "h", 1)} == {"a.wav", "b.wav"}


@pytest.mark.parametrize(
    "body",
    [b"[]", b'{"attempts": 1}', b"\xff", json.dumps({**Failure("a", "h", 1, "e", "w", "t").__dict__, "attempts": -1}).encode()],
)
def test_hand_edited_failure_count_is_ignored_and_restarted(tmp_path, body):
    store = LocalStore(tmp_path)
    store.write(failure_key("a.wav"), body)
    assert read_failure(store, "a.wav") is None
    assert count_failure(store, "a.wav", "h", "E", "w") == 1


# -- the heartbeat ---------------------------------------------------------------------------


def test_heartbeat_keeps_a_short_lease_alive_across_a_long_window_and_stops_cleanly(store):
    # A beat every TTL/3 leaves two beats of slack, 2 s here: a renewal through moto on a machine
    # busy with the rest of the suite can take most of a second.
    ttl = 3.0
    mine = Leases(store, "worker-a", ttl)
    assert mine.claim("song.wav")
    with Heartbeat(mine) as heartbeat:
        assert heartbeat.interval_s == pytest.approx(1.0)
        time.sleep(4.5)  # one "window" longer than the TTL
        assert not Leases(store, "worker-b", ttl).claim("song.wav")
        assert mine.holds("song.wav")
    assert not heartbeat._thread.is_alive()
    lease = json.loads(store.read(lease_key("song.wav"))[0])
    assert lease["owner"] == "worker-a" and lease["expires_at"] > time.time()
    time.sleep(ttl + 0.1)  # no heartbeat now: the lease runs out and another worker takes it
    assert Leases(store, "worker-b", ttl).claim("song.wav")


def test_a_lease_taken_by_another_worker_is_lost_on_the_next_beat(store):
    mine = Leases(store, "worker-a", 1.5)
    assert mine.claim("song.wav")
    theirs = Leases(store, "worker-b", 600)
    with Heartbeat(mine, interval_s=0.1):
        time.sleep(1.8)  # expired meanwhile? no: renewed every 0.1 s
        assert mine.holds("song.wav")
        # Another worker takes it over (as after a pause longer than the TTL): 412 on renewal.
        # A renewal landing between its read and its write makes the write lose; it reads again.
        taken = None
        for _attempt in range(50):
            etag = store.read(lease_key("song.wav"))[1]
            taken = store.replace(lease_key("song.wav"), theirs._body(), etag)
            if taken is not None:
                break
        assert taken is not None
        deadline = time.monotonic() + 5
        while mine.holds("song.wav") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not mine.holds("song.wav")
    assert json.loads(store.read(lease_key("song.wav"))[0])["owner"] == "worker-b"


class FlakyStore(LocalStore):
    """A store whose lease renewals fail `failures` times (an S3 409 that outlasted the retries,
    or a dropped connection)."""

    failures = 0

    def replace(self, key, data, version):
        if self.failures:
            self.failures -= 1
            raise ConnectionError("connection reset")
        return super().replace(key, data, version)


def test_a_failed_renewal_is_tried_again_at_the_next_beat(tmp_path, caplog):
    store = FlakyStore(tmp_path)
    mine = Leases(store, "worker-a", 1.5)
    assert mine.claim("song.wav")
    store.failures = 2
    with Heartbeat(mine, interval_s=0.1):
        time.sleep(0.6)
    assert store.failures == 0 and mine.holds("song.wav")
    assert "could not renew the lease on song.wav (trying again): connection reset" in caplog.text
    assert json.loads(store.read(lease_key("song.wav"))[0])["owner"] == "worker-a"


# -- the worker: give up, wait, take over -----------------------------------------------------


class FailingEngine(FakeEngine):
    def generate(self, rows, on_step=None):
        raise RuntimeError("out of memory")


def test_a_song_is_given_up_after_max_attempts_and_then_the_batch_is_done(tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("calm piano;2;calm\n")
    out = tmp_path / "out"
    argv = ["--prompts", str(prompts), "--output", str(out), "--window-s", "1", "--stride-s", "0.5"]
    engines = []

    def failing(model):
        engines.append(FailingEngine())
        return engines[-1]

    # One worker alone makes both attempts, the second after the other songs.
    # Given up is done: exit 0, with the song listed.
    assert main([*argv, "--worker-id", "a"], load_engine=failing) == 0
    err = capsys.readouterr().err
    assert "calm.wav failed attempt 1 of 2; trying it again after the other songs" in err
    assert "calm.wav failed 2 of 2 attempts: given up" in err
    assert "given up: calm.wav failed 2 times, last: RuntimeError: out of memory" in err
    assert len(engines) == 1  # one model load for both attempts
    # The count is shared: another worker allowed a third attempt makes only that one.
    assert main([*argv, "--worker-id", "b", "--max-attempts", "3"], load_engine=failing) == 0
    err = capsys.readouterr().err
    assert "calm.wav failed 3 of 3 attempts: given up" in err and "attempt 1 of" not in err
    assert "given up: calm.wav failed 3 times, last: RuntimeError: out of memory" in err

    def never(model):
        raise AssertionError("the model was loaded")

    # Every song done, one failed for good: exit 0, and the song is listed with its error.
    assert main([*argv, "--worker-id", "c", "--max-attempts", "3"], load_engine=never) == 0
    err = capsys.readouterr().err
    assert "gave up on calm.wav (line 1): failed 3 times, last by b: RuntimeError: out of memory" in err
    assert "given up: calm.wav failed 3 times, last: RuntimeError: out of memory" in err
    assert parse_report((out / "cost_report.csv").read_bytes()) == []
    assert "RuntimeError: out of memory" in (out / "index.html").read_text()
    assert not (out / ".leases").exists() or not list((out / ".leases").iterdir())

    # Edited line: a new song as far as failures go; once stored, its count is removed.
    prompts.write_text("calm organ;2;calm\n")
    assert main([*argv, "--max-attempts", "3"], load_engine=lambda model: FakeEngine()) == 0
    assert (out / "calm.wav").is_file() and not (out / failure_key("calm.wav")).exists()


class FailingOnce(FakeEngine):
    """Fails the first window call of every song whose prompt holds one of `words`; with
    `always`, every call of theirs."""

    def __init__(self, words, always=()):
        super().__init__()
        self.words, self.always, self.failed, self.prompt_of = tuple(words), tuple(always), [], {}

    def generate(self, rows, on_step=None):
        for row in rows:
            prompt = self.prompt_of[id(row.conditioning)]
            once = any(w in prompt for w in self.words) and prompt not in self.failed
            if once or any(w in prompt for w in self.always):
                self.failed.append(prompt)
                raise RuntimeError(f"flaky GPU on {prompt!r}")
        return super().generate(rows, on_step)

    def condition(self, prompt):
        conditioning = super().condition(prompt)
        self.prompt_of[id(conditioning)] = prompt
        return conditioning


def test_one_worker_alone_makes_the_second_attempt_and_writes_the_song(tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("calm piano;2;calm\nfast drums;1;drums\nsoft strings;1.5;strings\n")
    out = tmp_path / "out"
    engine = FailingOnce(["calm"])
    argv = ["--prompts", str(prompts), "--output", str(out), "--window-s", "1", "--stride-s", "0.5",
            "--batch-size", "1", "--worker-id", "a"]
    assert main(argv, load_engine=lambda model: engine) == 0
    err = capsys.readouterr().err
    assert "calm.wav failed attempt 1 of 2; trying it again after the other songs" in err
    # Put back after the others: the other songs were generated before its second attempt.
    assert err.index("generated drums.wav") < err.index("generated calm.wav")
    assert err.index("generated strings.wav") < err.index("generated calm.wav")
    assert soundfile.info(out / "calm.wav").frames == 2 * 8000
    assert not (out / failure_key("calm.wav")).exists()  # stored: its count is gone
    rows = parse_report((out / "cost_report.csv").read_bytes())
    assert [r["s3_filename"] for r in rows] == ["calm.wav", "drums.wav", "strings.wav"]
    assert "given up" not in err and "not written" not in err


def test_a_song_failing_every_attempt_is_listed_and_the_batch_is_done(tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("calm piano;2;calm\nfast drums;1;drums\n")
    out = tmp_path / "out"
    engine = FailingOnce([], always=["calm"])
    argv = ["--prompts", str(prompts), "--output", str(out), "--window-s", "1", "--stride-s", "0.5",
            "--worker-id", "a"]
    assert main(argv, load_engine=lambda model: engine) == 0
    err = capsys.readouterr().err
    assert err.count("failed calm.wav (line 1): RuntimeError: flaky GPU") == 2
    assert "calm.wav failed 2 of 2 attempts: given up" in err
    assert err.rstrip().endswith(
        "ERROR given up: calm.wav failed 2 times, last: RuntimeError: flaky GPU on 'calm piano'"
    )
    assert sorted(p.name for p in out.glob("*.wav")) == ["drums.wav"]
    assert [r["s3_filename"] for r in parse_report((out / "cost_report.csv").read_bytes())] == ["drums.wav"]
    assert read_failure(LocalStore(out), "calm.wav").attempts == 2


def test_waits_for_a_live_lease_then_takes_it_over_when_it_is_not_renewed(tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("calm piano;2;calm\nfast drums;1;drums\n")
    out = tmp_path / "out"
    ttl = 1.5
    # Another worker claimed calm.wav and died: its lease is never renewed.
    assert Leases(LocalStore(out), "dead-host", ttl).claim("calm.wav")
    started = time.monotonic()
    argv = ["--prompts", str(prompts), "--output", str(out), "--window-s", "1", "--stride-s", "0.5",
            "--lease-s", str(ttl), "--worker-id", "b"]
    assert main(argv, load_engine=lambda model: FakeEngine()) == 0
    err = capsys.readouterr().err
    assert time.monotonic() - started >= ttl - 0.2
    assert "waiting for 1 songs other workers hold (calm.wav); looking again every 0.5 s" in err
    assert "took over the lease on calm.wav (expired, held by dead-host)" in err
    assert "generated calm.wav" in err and "generated drums.wav" in err
    rows = parse_report((out / "cost_report.csv").read_bytes())
    assert [r["s3_filename"] for r in rows] == ["calm.wav", "drums.wav"]


def test_a_song_another_worker_stores_meanwhile_ends_the_wait(tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("calm piano;2;calm\n")
    out = tmp_path / "out"
    store = LocalStore(out)
    assert Leases(store, "live-host", 600).claim("calm.wav")

    # A whole 2 s song: a stored file that is not one would be set aside and made again.
    wav = tmp_path / "theirs.wav"
    soundfile.write(wav, np.full(2 * 8000, 0.25), 8000, subtype="PCM_16")

    def other_worker_finishes():
        time.sleep(1.0)
        store.upload_new(wav, "calm.wav", {})
        store.delete(lease_key("calm.wav"))

    threading.Thread(target=other_worker_finishes).start()
    argv = ["--prompts", str(prompts), "--output", str(out), "--lease-s", "1.5", "--worker-id", "b"]
    engine = FakeEngine()
    assert main(argv, load_engine=lambda model: engine) == 0
    err = capsys.readouterr().err
    assert engine.conditioned == []  # never generated here
    assert "calm.wav is being generated by live-host" in err
    assert "skipped calm.wav: already at" in err
    assert (out / "calm.wav").read_bytes() == wav.read_bytes()


class LiveHolder:
    """Another worker, alive: it holds `file_name` under `owner` (or that name from another
    host) and renews the lease every third of its TTL, like the heartbeat of a worker still
    generating; after `stores_after_s` it stores the song and releases the lease."""

    def __init__(self, store, file_name, owner="live-host", ttl=1.5, stores_after_s=20.0, process=None):
        extra = {} if process is None else {"process": process}
        self.leases = Leases(store, owner, ttl, **extra)
        assert self.leases.claim(file_name)
        self.store, self.file_name, self.stores_after_s = store, file_name, stores_after_s
        self.heartbeat = Heartbeat(self.leases)
        self.done = threading.Event()

    def __enter__(self):
        self.heartbeat.start()
        self.thread = threading.Thread(target=self._finish, daemon=True)
        self.thread.start()
        return self

    def _finish(self):
        if not self.done.wait(self.stores_after_s):
            self.store.write(self.file_name, b"RIFF")
            self.leases.release(self.file_name)

    def __exit__(self, *exc):
        self.done.set()
        self.heartbeat.stop()


def test_a_worker_with_nothing_left_to_claim_leaves_the_song_to_its_live_holder(tmp_path, capsys):
    """The end of a batch: this worker generates what it can claim, then finds the last song
    under a lease that is renewed, so its holder is alive: the worker ends its batch within
    about one lease period (exit 0, songs left named) instead of idling until the song is done."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("calm piano;2;calm\nfast drums;1;drums\n")
    out = tmp_path / "out"
    engine = FakeEngine()
    argv = ["--prompts", str(prompts), "--output", str(out), "--window-s", "1", "--stride-s", "0.5",
            "--lease-s", "1.5", "--worker-id", "b"]
    with LiveHolder(LocalStore(out), "calm.wav"):
        started = time.monotonic()
        assert main(argv, load_engine=lambda model: engine) == 0
        waited = time.monotonic() - started
    err = capsys.readouterr().err
    assert waited < 1.5 + 3, waited  # one lease period and a poll, not the 20 s the holder takes
    assert engine.conditioned == ["fast drums"]  # its own song; the held one never here
    assert "left calm.wav to live-host, which renews its lease" in err
    assert "done: 1 generated, 0 skipped, 0 failed, 1 left to live workers, 0 unfinished" in err
    assert not (out / "calm.wav").exists() and (out / "drums.wav").is_file()
    assert json.loads(LocalStore(out).read(lease_key("calm.wav"))[0])["owner"] == "live-host"


def test_a_live_process_with_this_workers_id_keeps_its_song(tmp_path, capsys):
    """Two workers started with one --worker-id: the other one, alive on another host, renews
    its lease on calm.wav; this one warns, leaves the song to it and never generates it."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("calm piano;2;calm\n")
    out = tmp_path / "out"
    engine = FakeEngine()
    argv = ["--prompts", str(prompts), "--output", str(out), "--lease-s", "1.5", "--worker-id", "batch"]
    with LiveHolder(LocalStore(out), "calm.wav", owner="batch", process="host-2:4242:1700000000"):
        assert main(argv, load_engine=lambda model: engine) == 0
    err = capsys.readouterr().err
    assert engine.conditioned == []
    assert "calm.wav is held by another process with this worker's name 'batch' (host-2:4242:1700000000" in err
    assert "left calm.wav to batch, which renews its lease" in err


@pytest.mark.parametrize(("system_state", "code"), [("running", 143), ("stopping", 3)])
def test_a_sigterm_while_waiting_exits_143_unless_the_system_is_shutting_down(
    tmp_path, capsys, monkeypatch, system_state, code
):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("calm piano;2;calm\n")
    out = tmp_path / "out"
    assert Leases(LocalStore(out), "live-host", 600).claim("calm.wav")
    import signal

    monkeypatch.setenv("PATH", f"{fake_systemctl(tmp_path / 'bin', system_state)}{os.pathsep}{os.environ['PATH']}")
    threading.Timer(0.5, lambda: signal.raise_signal(signal.SIGTERM)).start()
    argv = ["--prompts", str(prompts), "--output", str(out), "--lease-s", "60", "--worker-id", "b"]
    started = time.monotonic()
    assert main(argv, load_engine=lambda model: FakeEngine()) == code
    assert time.monotonic() - started < 5
    err = capsys.readouterr().err
    assert "calm.wav held by other workers" in err and "resume" not in err
    assert json.loads(LocalStore(out).read(lease_key("calm.wav"))[0])["owner"] == "live-host"


def test_a_lease_lost_mid_song_drops_the_song_here_and_it_is_finished_once(tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("calm piano;6;calm\n")
    out = tmp_path / "out"
    store = LocalStore(out)
    stolen = []

    def on_generate(rows):
        time.sleep(0.3)  # a window long enough for heartbeats in between
        if stolen or not (out / ".checkpoints").is_dir():
            return
        # Another worker takes the song over (as if this one had stalled past its TTL) with a
        # lease it then never renews.
        while not stolen:
            etag = store.read(lease_key("calm.wav"))[1]
            if store.replace(lease_key("calm.wav"), Leases(store, "thief", 1.0)._body(), etag):
                stolen.append(time.time())

    argv = ["--prompts", str(prompts), "--output", str(out), "--window-s", "1", "--stride-s", "0.5",
            "--lease-s", "0.9", "--worker-id", "b"]
    assert main(argv, load_engine=lambda model: FakeEngine(on_generate)) == 0
    err = capsys.readouterr().err
    assert "lost the lease on calm.wav to another worker; dropped the song here" in err
    assert "took over the lease on calm.wav (expired, held by thief)" in err
    assert "resuming calm.wav at window" in err
    assert err.count("generated calm.wav") == 1
    assert soundfile.info(out / "calm.wav").frames == 6 * 8000
    assert [r["s3_filename"] for r in parse_report((out / "cost_report.csv").read_bytes())] == ["calm.wav"]


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--lease-s", "0.1", "--lease-s/MUSICGEN_LEASE_S='0.1': must be >= 0.5"),
        ("--max-attempts", "0", "--max-attempts/MUSICGEN_MAX_ATTEMPTS='0': must be > 0"),
        ("--max-attempts", "1.5", "--max-attempts/MUSICGEN_MAX_ATTEMPTS='1.5' is not a valid int"),
        ("--max-attempts", "101", "--max-attempts/MUSICGEN_MAX_ATTEMPTS='101': must be <= 100"),
    ],
)
def test_bad_lease_or_attempts_exit_2_before_the_model_loads(tmp_path, capsys, option, value, message):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("calm piano;2;calm\n")

    def never(model):
        raise AssertionError("the model was loaded")

    argv = ["--prompts", str(prompts), "--output", str(tmp_path / "out"), option, value]
    assert main(argv, load_engine=never) == 2
    assert capsys.readouterr().err == f"error: {message}\n"


def test_max_attempts_from_the_environment(tmp_path, monkeypatch):
    from worker.cli import parse_options, settings_from

    monkeypatch.setenv("MUSICGEN_MAX_ATTEMPTS", "5")
    settings, _ = settings_from(parse_options([]))
    assert (settings.max_attempts, settings.lease_s) == (5, 120.0)


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--max-hours", "0"], {}, "--max-hours/MUSICGEN_MAX_HOURS='0': must be > 0"),
        (["--max-hours", "-1"], {}, "--max-hours/MUSICGEN_MAX_HOURS='-1': must be > 0"),
        (["--max-hours", "inf"], {}, "--max-hours/MUSICGEN_MAX_HOURS='inf': must be a finite number"),
        ([], {"MUSICGEN_MAX_HOURS": "nan"}, "--max-hours/MUSICGEN_MAX_HOURS='nan': must be a finite number"),
        ([], {"MUSICGEN_MAX_HOURS": "12h"}, "--max-hours/MUSICGEN_MAX_HOURS='12h' is not a valid float"),
    ],
)
def test_a_bad_time_cap_exits_2_before_the_model_loads(refused, argv, env, message):
    assert refused(argv, env) == f"error: {message}\n"


def test_the_time_cap_from_the_environment_and_no_cap_by_default(monkeypatch):
    from worker.cli import parse_options, settings_from

    assert settings_from(parse_options([]))[0].max_hours is None
    monkeypatch.setenv("MUSICGEN_MAX_HOURS", "12")
    assert settings_from(parse_options([]))[0].max_hours == 12.0
    monkeypatch.setenv("MUSICGEN_MAX_HOURS", " ")  # an empty line in the env file: no cap
    assert settings_from(parse_options([]))[0].max_hours is None


def test_the_time_cap_is_reached_once_and_stays_reached(caplog):
    from worker.instance.spot import TimeCap

    now = [100.0]
    cap = TimeCap(0.5, started=100.0, clock=lambda: now[0])
    now[0] = 100.0 + 1799
    assert not cap.reached()
    now[0] = 100.0 + 1800
    assert cap.reached() and cap.reached()
    assert caplog.text.count("time cap of 0.5 h reached") == 1
    assert not TimeCap(None, started=0.0, clock=lambda: 1e12).reached()


def test_the_time_cap_while_waiting_for_another_worker_exits_5(tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("calm piano;2;calm\n")
    out = tmp_path / "out"
    assert Leases(LocalStore(out), "live-host", 600).claim("calm.wav")
    argv = ["--prompts", str(prompts), "--output", str(out), "--lease-s", "60", "--worker-id", "b",
            "--max-hours", "0.0003"]  # about a second
    started = time.monotonic()
    assert main(argv, load_engine=lambda model: FakeEngine()) == 5
    assert time.monotonic() - started < 10
    err = capsys.readouterr().err
    assert "stopped at the time cap of 0.0003 h (--max-hours)" in err
    assert json.loads(LocalStore(out).read(lease_key("calm.wav"))[0])["owner"] == "live-host"


def test_a_time_cap_too_short_for_a_window_says_that_nothing_was_saved(tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("calm piano;2;calm\n")
    out = tmp_path / "out"
    argv = ["--prompts", str(prompts), "--output", str(out), "--max-hours", "1e-12"]
    assert main(argv, load_engine=lambda model: FakeEngine()) == 5
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.endswith(
        "WARNING stopped at the time cap of 1e-12 h (--max-hours); nothing saved of calm.wav (no window "
        "generated in this run): run again to generate; --max-hours 1e-12 ended the run before any window"
    )
    assert "resume" not in last and not (out / ".checkpoints").exists()
