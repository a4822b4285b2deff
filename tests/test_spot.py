"""Why a run stops: the metadata service's spot notice and Auto Scaling target state, systemd's
state, signals and the time cap, and the exit code each gives."""

import os
import signal
import time

import pytest

from tests.imds_stub import ImdsStub
from tests.support.worker_process import fake_systemctl
from worker.instance.spot import SpotWatcher
from worker.instance.stopping import stop_signals, system_stopping
from worker.run.results import EXIT_SIGINT, EXIT_SIGTERM, EXIT_STOPPED, EXIT_TIME_CAP


def test_poll_follows_imdsv2_404_then_notice():
    with ImdsStub() as imds:
        watcher = SpotWatcher(imds.url)
        assert watcher.poll() is None
        imds.interrupt()
        assert '"action": "stop"' in watcher.poll()
        assert imds.tokens_issued == 1  # the token is reused between polls


def test_expired_token_is_refreshed():
    with ImdsStub(expire_first_token=True) as imds:
        imds.interrupt()
        assert SpotWatcher(imds.url).poll() is not None
        assert imds.tokens_issued == 2


def test_unreachable_service_means_no_notice():
    watcher = SpotWatcher("http://127.0.0.1:9", timeout_s=0.5)
    assert watcher.poll() is None and watcher.check() is None


@pytest.mark.parametrize(
    ("state", "leaving"),
    [(None, False), ("InService", False), ("Standby", False), ("Warmed:Stopped", False), ("Terminated", True)],
)
def test_only_the_target_state_terminated_means_the_instance_leaves_its_group(state, leaving):
    with ImdsStub(lifecycle_state=state) as imds:
        watcher = SpotWatcher(imds.url)
        assert watcher.leaving_group() is leaving
        assert (watcher.check() == "Auto Scaling target lifecycle state Terminated") is leaving


def test_watcher_thread_raises_the_flag_within_one_interval():
    with ImdsStub() as imds:
        watcher = SpotWatcher(imds.url, interval_s=0.05).start()
        time.sleep(0.2)
        assert not watcher.interrupted and imds.notice_requests >= 2
        imds.interrupt()
        deadline = time.monotonic() + 2
        while not watcher.interrupted and time.monotonic() < deadline:
            time.sleep(0.01)
        assert watcher.interrupted and watcher.reason.startswith("spot interruption notice: {")
        watcher.stop()


def test_the_watcher_stops_the_run_when_auto_scaling_takes_the_instance_out():
    with (
        ImdsStub(lifecycle_state="InService") as imds,
        stop_signals(imds.url, 0.05, None, time.monotonic(), lambda: False) as stop,
    ):
        time.sleep(0.2)
        assert not stop.requested()
        imds.lifecycle_state = "Terminated"
        deadline = time.monotonic() + 5
        while not stop.requested() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert stop.code() == EXIT_STOPPED
        assert stop.cause.why == (
            "stopped because the instance is stopping (Auto Scaling target lifecycle state Terminated)"
        )


def test_stop_signals_restore_the_handlers():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with stop_signals(None, 5.0, None, time.monotonic(), lambda: False) as stop:
        assert not stop.requested() and stop.code() is None
        signal.raise_signal(signal.SIGTERM)
        assert stop.requested()
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


@pytest.mark.parametrize(
    ("sent", "system_is_stopping", "code"),
    [
        (signal.SIGTERM, False, EXIT_SIGTERM),  # systemctl stop, kill: the batch ends, the instance scales in
        (signal.SIGINT, False, EXIT_SIGINT),  # Ctrl-C at a terminal
        (signal.SIGTERM, True, EXIT_STOPPED),  # systemd stopping the unit as the system shuts down
        (signal.SIGINT, True, EXIT_STOPPED),
    ],
)
def test_a_signal_is_an_instance_stop_only_when_the_system_is_shutting_down(sent, system_is_stopping, code):
    asked = []

    def is_stopping():
        asked.append(True)
        return system_is_stopping

    with stop_signals(None, 5.0, None, time.monotonic(), is_stopping) as stop:
        assert not stop.requested() and asked == []  # systemd is asked only once a signal came
        signal.raise_signal(sent)
        assert stop.requested() and stop.code() == code
        signal.raise_signal(signal.SIGTERM)  # a second signal changes nothing: decided once
        assert stop.requested() and stop.code() == code and len(asked) == 1


def test_a_signal_while_auto_scaling_terminates_the_instance_is_an_instance_stop():
    """The watcher polls every 60 s here, so the signal comes before its next poll: the
    metadata service is asked at once."""
    with (
        ImdsStub(lifecycle_state="InService") as imds,
        stop_signals(imds.url, 60, None, time.monotonic(), lambda: False) as stop,
    ):
        deadline = time.monotonic() + 5
        while imds.lifecycle_requests < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not stop.requested()
        imds.lifecycle_state = "Terminated"
        signal.raise_signal(signal.SIGTERM)
        assert stop.requested() and stop.code() == EXIT_STOPPED
        assert not stop.watcher.interrupted  # the signal's own check found it


def test_the_time_cap_is_exit_5_also_when_a_signal_comes_after_it():
    """systemd's RuntimeMaxSec= sends SIGTERM once the cap has passed (a hung worker)."""
    with stop_signals(None, 5.0, 0.5, time.monotonic() - 1800, lambda: True) as stop:
        signal.raise_signal(signal.SIGTERM)
        assert stop.requested() and stop.code() == EXIT_TIME_CAP and stop.time_cap.hit
    with stop_signals(None, 5.0, 0.5, time.monotonic() - 1800, lambda: False) as stop:
        assert stop.requested() and stop.code() == EXIT_TIME_CAP


def test_a_spot_notice_is_an_instance_stop_without_any_signal():
    with ImdsStub() as imds:
        with stop_signals(imds.url, 0.05, None, time.monotonic(), lambda: False) as stop:
            assert not stop.requested()
            imds.interrupt()
            deadline = time.monotonic() + 5
            while not stop.requested() and time.monotonic() < deadline:
                time.sleep(0.02)
            assert stop.code() == EXIT_STOPPED and "spot interruption notice" in stop.cause.why
        assert not stop.watcher._thread.is_alive()


@pytest.mark.parametrize(("state", "stopping"), [("stopping", True), ("running", False), ("degraded", False), ("offline", False)])
def test_systemd_says_whether_the_system_is_shutting_down(tmp_path, monkeypatch, state, stopping):
    """`systemctl is-system-running` as a program on PATH; it exits 1 for every state but
    running, and the state still counts."""
    monkeypatch.setenv("PATH", f"{fake_systemctl(tmp_path, state)}{os.pathsep}{os.environ['PATH']}")
    assert system_stopping() is stopping


def test_no_systemctl_means_the_system_is_not_stopping(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # a container, macOS: no systemd
    assert system_stopping() is False
