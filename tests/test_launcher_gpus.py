"""GPU counts and memory from moto's DescribeInstanceTypes, each GPU's default batch, and the
estimate for a multi-GPU instance."""

from __future__ import annotations

import pytest

from contract.defaults import MAX_AUTO_BATCH_SIZE
from launcher import aws
from launcher.estimate import Estimate, estimate_batch, format_estimate
from launcher.gpus import MUSICGEN_SMALL_PER_SONG, InstanceGpus, NoGpuError, describe_gpus


@pytest.mark.parametrize(
    ("instance_type", "expected"),
    [
        ("g4dn.xlarge", InstanceGpus("g4dn.xlarge", 1, "NVIDIA T4", 16384, 4)),
        ("g4dn.12xlarge", InstanceGpus("g4dn.12xlarge", 4, "NVIDIA T4", 16384, 48)),
        ("g5.12xlarge", InstanceGpus("g5.12xlarge", 4, "NVIDIA A10G", 22888, 48)),
        ("g6.12xlarge", InstanceGpus("g6.12xlarge", 4, "NVIDIA L4", 22888, 48)),
        ("p4d.24xlarge", InstanceGpus("p4d.24xlarge", 8, "NVIDIA A100", 40960, 96)),
    ],
)
def test_gpus_come_from_describe_instance_types(aws_env: str, instance_type: str, expected) -> None:
    assert describe_gpus(aws.ec2_client("us-east-1"), instance_type, "us-east-1") == expected


def test_a_type_without_gpus_or_an_unknown_type_is_refused(aws_env: str) -> None:
    ec2 = aws.ec2_client("us-east-1")
    with pytest.raises(NoGpuError, match="instance type m5.large has no GPU"):
        describe_gpus(ec2, "m5.large", "us-east-1")
    with pytest.raises(NoGpuError, match="g4dn.huge is not an EC2 instance type offered in us-east-1"):
        describe_gpus(ec2, "g4dn.huge", "us-east-1")


def test_a_song_needs_its_window_cache_in_half_precision() -> None:
    # 2 rows x 24 layers x (K, V) x 1024 x (1500 + 4) positions x 2 bytes, plus sampling buffers.
    assert MUSICGEN_SMALL_PER_SONG == 2 * 24 * 2 * 1024 * 1504 * 2 + 2 * 4 * 2048 * 16


@pytest.mark.parametrize(
    ("memory_mib", "batch"),
    [
        (16384, 35),  # T4: 70% of (16 GiB - 2 GiB) / 282 MiB
        (22888, 51),  # A10G, L4
        (24576, 55),
        (40960, MAX_AUTO_BATCH_SIZE),  # A100 40 GB: capped
        (2048, 1),  # nothing left after the model: still one song
    ],
)
def test_each_gpus_default_batch_follows_from_its_memory(memory_mib: int, batch: int) -> None:
    assert InstanceGpus("x", 1, "GPU", memory_mib, 4).default_batch == batch


@pytest.mark.parametrize(
    ("songs", "workers", "expected"),
    [
        # 1 GPU-h of generation: 4 GPUs at once make it 15 min of the instance, + 10 min boot.
        (8, 1, Estimate(1800, 1.0, 1 / 6, 0.25 + 1 / 6, 0.25 + 1 / 6, 4.0 * (0.25 + 1 / 6), 4)),
        # Two songs keep only two GPUs busy; the others are paid while idle.
        (2, 1, Estimate(1800, 1.0, 1 / 6, 0.5 + 1 / 6, 0.5 + 1 / 6, 4.0 * (0.5 + 1 / 6), 2)),
        # Two instances, 8 songs: each instance's 4 GPUs get one song each.
        (8, 2, Estimate(1800, 1.0, 2 / 6, 0.25 + 2 / 6, 0.125 + 1 / 6, 4.0 * (0.25 + 2 / 6), 4)),
        # Unknown song count: every GPU is assumed busy.
        (None, 1, Estimate(1800, 1.0, 1 / 6, 0.25 + 1 / 6, 0.25 + 1 / 6, 4.0 * (0.25 + 1 / 6), 4)),
    ],
)
def test_songs_run_one_per_gpu_at_a_time_per_instance(
    aws_env: str, songs: int | None, workers: int, expected: Estimate
) -> None:
    gpus = describe_gpus(aws.ec2_client("us-east-1"), "g4dn.12xlarge", "us-east-1")
    got = estimate_batch(
        1800, realtime_factor=0.5, max_price=4.0, worker_count=workers, boot_overhead_min=10,
        gpus_per_instance=gpus.count, songs=songs,
    )
    assert vars(got) == pytest.approx(vars(expected))


def test_format_estimate_for_a_four_gpu_instance(aws_env: str) -> None:
    gpus = describe_gpus(aws.ec2_client("us-east-1"), "g4dn.12xlarge", "us-east-1")
    options = {"realtime_factor": 0.5, "max_price": 4.0, "worker_count": 1, "boot_overhead_min": 10}
    got = estimate_batch(1800, **options, gpus_per_instance=gpus.count, songs=8)
    assert format_estimate(got, **options, gpus=gpus) == [
        "Estimate (upper bound, at the max price): $1.67",
        (
            "  30.0 min of audio at 0.5 audio-s per second per GPU = 1.00 GPU-h of generation,"
            " 0.25 h on 4 GPUs at once"
        ),
        (
            "  4 × NVIDIA T4 (16 GiB) per instance: 4 workers, one per GPU, each up to 35 songs at once"
            " (its default batch)"
        ),
        "  + 1 × 10 min boot and model load = 0.42 instance-h × $4.00/h",
        "  about 0.4 h until the last song is in the bucket",
    ]
