"""The end of a batch with real worker processes, moto's S3 and Auto Scaling servers: a worker
with nothing left to claim leaves the song to its live holder and scales its instance in; the
holder is lost after that, and a replacement worker finishes the song from its checkpoint."""

import signal
import threading
import time

import boto3
import pytest

from tests.imds_stub import ImdsStub
from tests.support.autoscaling import group, make_group, run_scale_in
from tests.support.worker_process import (
    WINDOW,
    read_checkpoint,
    start_worker,
    wait_for_window,
    wav_frames,
)
from worker.cli import main
from worker.output.report import parse_report

# Real processes (workers, the bootstrap): the inner loop skips them with -m 'not slow'.
pytestmark = pytest.mark.slow

TTL_S = 3


@pytest.fixture
def bucket(aws_env):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="batch")
    return s3


class Output:
    """A process's output, read as it comes, so the test can act on a log line."""

    def __init__(self, process):
        self.process, self.lines = process, []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line)

    def saw(self, text):
        return any(text in line for line in list(self.lines))

    def finish(self, timeout=240):
        self.process.wait(timeout=timeout)
        self.thread.join(timeout=10)
        return self.process.returncode, "".join(self.lines)


def test_the_other_worker_leaves_and_a_replacement_finishes_the_song_of_a_holder_killed_after(
    bucket, tiny_model_dir, loaded_tiny_engine, tmp_path, capsys
):
    """The end of a batch across instances. Two hosts start together on a one-song batch: the
    one that claims the song (the holder) generates it; the other finds nothing left to claim,
    sees the holder renew its lease, and ends its batch with exit 0 at once instead of idling
    on its GPU until the song is done; its instance then scales in. Then the holder's instance
    is lost (kill -9, after the other has gone). A replacement worker, as the Auto Scaling group
    starts one for the lost instance, takes the lease over once it is no longer renewed,
    resumes the holder's last checkpoint and stores the song at its exact length. (The
    replacement runs in this process, on the engine it loaded once: what it finds in the bucket
    is what the real, killed holder left.)"""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a long ambient piano song;45;long\n")  # 18 windows
    lease = ["--lease-s", str(TTL_S), "--batch-size", "1"]
    workers = {
        wid: Output(start_worker(prompts, "s3://batch", tiny_model_dir, "--worker-id", wid, *lease,
                                 "--spool-dir", str(tmp_path / wid)))
        for wid in ("host-1", "host-2")
    }
    left = "left long.wav to "
    deadline = time.monotonic() + 180
    while not any(w.saw(left) for w in workers.values()):
        assert time.monotonic() < deadline and all(w.process.poll() is None for w in workers.values())
        time.sleep(0.1)
    (leaver_id,) = [wid for wid, w in workers.items() if w.saw(left)]
    (holder_id,) = [wid for wid in workers if wid != leaver_id]
    # The holder's instance is lost mid-song: frozen (SIGSTOP: no more windows, no more lease
    # renewals) once it saved a window, so it cannot finish the song however fast it runs, and
    # killed below.
    holder = workers[holder_id].process
    wait_for_window(bucket, "batch", "long.wav", 1, holder)
    holder.send_signal(signal.SIGSTOP)
    code, output = workers[leaver_id].finish()
    assert code == 0, output
    assert f"left long.wav to {holder_id}, which renews its lease" in output
    assert "done: 0 generated, 0 skipped, 0 failed, 1 left to live workers, 0 unfinished" in output

    # The leaver's batch is done, so its instance leaves the group, which launches nothing in
    # its place. (The group replacing the holder's lost instance is AWS's part, which moto lacks.)
    (leaver_instance,) = make_group(desired=1)
    with ImdsStub(instance_id=leaver_instance) as imds:
        scaled_in = run_scale_in(imds.url)
    assert scaled_in.returncode == 0, scaled_in.stderr
    assert (group()["DesiredCapacity"], group()["Instances"]) == (0, [])

    assert holder.poll() is None, "the holder finished the song before the other worker left"
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    last = read_checkpoint(bucket, "batch", "long.wav")
    assert 1 <= last.next_window < 18  # killed mid-song

    argv = ["--prompts", str(prompts), "--output", "s3://batch", "--model", str(tiny_model_dir),
            *WINDOW, "--worker-id", "host-3", *lease, "--spool-dir", str(tmp_path / "host-3")]
    code = main(argv, load_engine=lambda model: loaded_tiny_engine)
    output = capsys.readouterr().err
    assert code == 0, output
    assert f"took over the lease on long.wav (expired, held by {holder_id})" in output
    assert f"resuming long.wav at window {last.next_window + 1} of 18" in output
    assert wav_frames(bucket, "batch", "long.wav") == 45 * 8000
    rows = parse_report(bucket.get_object(Bucket="batch", Key="cost_report.csv")["Body"].read())
    assert [r["s3_filename"] for r in rows] == ["long.wav"]
    keys = [o["Key"] for o in bucket.list_objects_v2(Bucket="batch")["Contents"]]
    assert [k for k in keys if k.endswith(".wav")] == ["long.wav"]
    assert not [k for k in keys if k.startswith((".leases/", ".checkpoints/", ".failures/"))]
