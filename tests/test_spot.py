import time

from tests.imds_stub import ImdsStub
from worker.spot import SpotWatcher


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
