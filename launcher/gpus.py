"""The GPUs of an instance type (DescribeInstanceTypes) and how many songs each takes at once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from contract.aws import error_code
from contract.memory import batch_for_memory, bytes_per_song
from contract.modelsize import DecoderShape

# facebook/musicgen-small, the model the AMI bakes in, at the worker's default 30 s window
# (50 frames per second) with guidance, in half precision (fp16 or bf16, both 2 bytes).
MUSICGEN_SMALL = DecoderShape(layers=24, hidden=1024, ffn=4096, codebooks=4, vocab=2048)
MUSICGEN_SMALL_PER_SONG = bytes_per_song(MUSICGEN_SMALL, window_frames=1500, dtype_bytes=2, guidance=True)
# What a GPU holds before the songs: the CUDA context and the model's weights (about 1.2 GB in
# half precision). An assumption on the safe side; the worker measures its real free memory.
RESERVED_MIB = 2048


class NoGpuError(ValueError):
    pass


@dataclass(frozen=True)
class InstanceGpus:
    instance_type: str
    count: int
    name: str
    memory_mib: int  # per GPU
    vcpus: int  # what the spot vCPU quota counts

    @property
    def default_batch(self) -> int:
        """The worker's default batch (--batch-size 0) on one of these GPUs with musicgen-small."""
        free = max(0, self.memory_mib - RESERVED_MIB) * 2**20
        return batch_for_memory(free, MUSICGEN_SMALL_PER_SONG)

    def describe(self) -> str:
        songs = f"{self.default_batch} song{'' if self.default_batch == 1 else 's'} at once (its default batch)"
        workers = "1 worker, up to" if self.count == 1 else f"{self.count} workers, one per GPU, each up to"
        return f"{self.count} × {self.name} ({self.memory_mib / 1024:.0f} GiB) per instance: {workers} {songs}"


def describe_gpus(ec2: Any, instance_type: str, region: str) -> InstanceGpus:
    """GPU count, model and memory, and the vCPUs, of `instance_type` from EC2's own catalogue
    (one DescribeInstanceTypes call serves the estimate and the spot quota check)."""
    try:
        (info,) = ec2.describe_instance_types(InstanceTypes=[instance_type])["InstanceTypes"]
    except ClientError as exc:
        if error_code(exc) != "InvalidInstanceType":
            raise
        raise NoGpuError(f"{instance_type} is not an EC2 instance type offered in {region}") from None
    gpus = info.get("GpuInfo", {}).get("Gpus", [])
    if not gpus:
        raise NoGpuError(f"instance type {instance_type} has no GPU")
    count = sum(gpu["Count"] for gpu in gpus)
    names = {f"{gpu.get('Manufacturer', '')} {gpu['Name']}".strip() for gpu in gpus}
    return InstanceGpus(
        instance_type=instance_type,
        count=count,
        name=" + ".join(sorted(names)),
        memory_mib=min(gpu["MemoryInfo"]["SizeInMiB"] for gpu in gpus),
        vcpus=int(info["VCpuInfo"]["DefaultVCpus"]),
    )
