import signal
import time

from tests.imds_stub import ImdsStub
from worker.spot import SpotWatcher
from worker.stopping import stop_signals


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
    assert SpotWatcher("http://127.0.0.1:9", timeout_s=0.5).poll() is None


def test_watcher_thread_raises_the_flag_within_one_interval():
    with ImdsStub() as imds:
        watcher = SpotWatcher(imds.url, interval_s=0.05).start()
        time.sleep(0.2)
        assert not watcher.interrupted and imds.notice_requests >= 2
        imds.interrupt()
        deadline = time.monotonic() + 2
        while not watcher.interrupted and time.monotonic() < deadline:
            time.sleep(0.01)
        assert watcher.interrupted
        watcher.stop()


def test_stop_signals_turn_a_sigterm_into_a_stop_and_restore_the_handlers():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with stop_signals(None, 5.0, None, time.monotonic()) as stop:
        assert not stop.requested()
        signal.raise_signal(signal.SIGTERM)
        assert stop.interrupted() and stop.requested()
        assert not stop.time_cap.hit
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_stop_signals_stop_at_the_time_cap_without_an_interruption():
    with stop_signals(None, 5.0, 0.5, started=time.monotonic() - 1800) as stop:
        assert stop.requested()
        assert stop.time_cap.hit and not stop.interrupted()


def test_stop_signals_watch_for_a_spot_notice_and_stop_the_watcher_after():
    with ImdsStub() as imds:
        with stop_signals(imds.url, 0.05, None, time.monotonic()) as stop:
            assert not stop.requested()
            imds.interrupt()
            deadline = time.monotonic() + 5
            while not stop.requested() and time.monotonic() < deadline:
                time.sleep(0.02)
            assert stop.interrupted()
        assert not stop.watcher._thread.is_alive()
