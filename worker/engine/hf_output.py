"""What transformers prints while a MusicGen is loaded or saved, kept to what is news.

- MusicGen's decoder puts its pad, start and BOS tokens one past the codebook (`vocab_size`):
  its embedding has `vocab_size + 1` rows, and transformers' MusicgenDecoderConfig accepts a
  token id equal to `vocab_size` for that reason (its `validate_token_ids` override). The
  composite MusicgenConfig runs the generic check (`PreTrainedConfig.validate_token_ids`,
  ids below `vocab_size`) on that same decoder config and warns "Model config: pad_token_id must
  be `None` or an integer within the vocabulary" for every checkpoint, facebook/musicgen-small
  included. Exactly that case is dropped; any other id out of range is still shown.
- transformers' own bars ("Loading weights", "Writing model shards") follow the worker's rule
  (worker/progress.py): bars on a terminal only.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from transformers.utils import logging as hf_logging

from worker.progress import on_terminal

# The logger of transformers/configuration_utils.py, whose validate_token_ids warns.
CONFIG_LOGGER = "transformers.configuration_utils"
_TOKEN_WARNING = re.compile(
    r"Model config: \w+_token_id must be `None` or an integer within the vocabulary "
    r"\(between 0 and (?P<last>\d+)\), got (?P<got>\d+)\."
)


class _TokenPastTheCodebook(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        found = _TOKEN_WARNING.match(record.getMessage())
        return not (found and int(found["got"]) == int(found["last"]) + 1)


@contextmanager
def quiet_loading(stream: TextIO | None = None) -> Iterator[None]:
    """Within: no warning for MusicGen's by-design special tokens; no transformers bars unless
    `stream` (stderr by default) is a terminal. Both are restored on the way out."""
    config_log = logging.getLogger(CONFIG_LOGGER)
    token_filter = _TokenPastTheCodebook()
    config_log.addFilter(token_filter)
    # transformers' documented switch for its tqdm bars (docs: main_classes/logging,
    # https://huggingface.co/docs/transformers/main_classes/logging).
    turn_off = not on_terminal(stream) and hf_logging.is_progress_bar_enabled()
    if turn_off:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        config_log.removeFilter(token_filter)
        if turn_off:
            hf_logging.enable_progress_bar()
