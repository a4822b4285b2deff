"""The tiny random MusicGen (worker/tiny_model.py) saved once per checkout, not once per test run.

Saving it builds a T5, an EnCodec and a decoder in transformers; the folder depends only on the
transformers version and the tiny configs, so it is kept under the checkout's `.cache/` (ignored
by git, removed by `make clean`) in a folder named after both. It is written to a temporary folder
and renamed into place, so test processes running side by side never see half a model.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

from tests.tf_support import REPO_ROOT

CACHE = REPO_ROOT / ".cache" / "tiny-models"


def cache_key(seed: int, audio_channels: int) -> str:
    """transformers' version and a digest of everything the saved folder is made from: the
    configs, the vocabulary, the seed and the code that builds it."""
    import transformers

    from worker import tiny_model
    from worker.hf_output import quiet_loading

    with quiet_loading():
        configs = [config.to_dict() for config in tiny_model.tiny_configs(audio_channels)]
    code = Path(tiny_model.__file__).read_text()
    made_of = json.dumps([configs, tiny_model.WORDS, seed, code], sort_keys=True, default=str)
    digest = hashlib.sha256(made_of.encode()).hexdigest()[:16]
    return f"transformers-{transformers.__version__}-{audio_channels}ch-seed{seed}-{digest}"


def cached_tiny_model(seed: int = 0, audio_channels: int = 1, cache: Path = CACHE) -> Path:
    """The tiny model's folder in the cache, saved there first if it is not there yet."""
    from worker.tiny_model import save_tiny_model

    folder = cache / cache_key(seed, audio_channels)
    if folder.is_dir():
        return folder
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
