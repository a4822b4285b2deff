"""The tiny random MusicGen (tools/tiny_model.py) saved once per checkout, not once per test run.

Saving it builds a T5, an EnCodec and a decoder in transformers; the folder depends only on the
transformers version and tools/tiny_model.py (the tiny configs, the vocabulary), so it is kept
under the checkout's `.cache/` (ignored by git, removed by `make clean`) in a folder named after
both. It is written to a temporary folder and renamed into place, so test processes running side
by side never see half a model.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import shutil
import tempfile
from pathlib import Path

from tests.tf_support import REPO_ROOT

CACHE = REPO_ROOT / ".cache" / "tiny-models"


def cache_key(seed: int, audio_channels: int) -> str:
    """transformers' version and a digest of what the saved folder is made from: the code that
    builds it (its configs and vocabulary are in there), the seed and the channels. Neither
    needs transformers imported, so a test that only hands the folder to a worker process stays
    light."""
    code = (REPO_ROOT / "tools" / "tiny_model.py").read_bytes()
    digest = hashlib.sha256(code + f":{seed}:{audio_channels}".encode()).hexdigest()[:16]
    version = importlib.metadata.version("transformers")
    return f"transformers-{version}-{audio_channels}ch-seed{seed}-{digest}"


def cached_tiny_model(seed: int = 0, audio_channels: int = 1, cache: Path = CACHE) -> Path:
    """The tiny model's folder in the cache, saved there first if it is not there yet."""
    folder = cache / cache_key(seed, audio_channels)
    if folder.is_dir():
        return folder
    from tools.tiny_model import save_tiny_model  # transformers: only to save it

    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".saving-", dir=cache))
    try:
        save_tiny_model(staging, seed=seed, audio_channels=audio_channels)
        staging.rename(folder)
    except OSError:
        if not folder.is_dir():  # not another process that saved it first: a real failure
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder
