"""The preallocated window cache against transformers' own growing cache, on a tiny decoder."""

import pytest
import torch
from transformers import MusicgenForConditionalGeneration
from transformers.cache_utils import DynamicCache, EncoderDecoderCache

from tools.tiny_model import CODEBOOK_SIZE, NUM_CODEBOOKS
from worker.engine.kvcache import WindowLayer, window_cache


@pytest.fixture(scope="module")
def decoder(tiny_model_dir):
    model = MusicgenForConditionalGeneration.from_pretrained(str(tiny_model_dir))
    return model.decoder.eval()


def step_logits(decoder, cache, ids, encoder_hidden, steps):
    """Logits of a prefill over `ids` and then `steps` single positions, as the engine runs them."""
    out = []
    with torch.inference_mode():
        inputs = ids
        for _ in range(steps + 1):
            logits = decoder(
                input_ids=inputs, encoder_hidden_states=encoder_hidden,
                past_key_values=cache, use_cache=True,
            ).logits[:, -1]
            out.append(logits)
            inputs = logits.argmax(-1, keepdim=True)
    return torch.stack(out)


def test_window_cache_gives_the_logits_of_the_growing_cache(decoder):
    torch.manual_seed(0)
    batch, prompt, steps = 3, 6, 5
    ids = torch.randint(0, CODEBOOK_SIZE, (batch * NUM_CODEBOOKS, prompt))
    encoder_hidden = torch.randn(batch, 4, decoder.config.hidden_size)
    layers = decoder.config.num_hidden_layers
    growing = EncoderDecoderCache(DynamicCache(), DynamicCache())
    expected = step_logits(decoder, growing, ids, encoder_hidden, steps)
    got = step_logits(decoder, window_cache(layers, prompt + steps), ids, encoder_hidden, steps)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_buffers_are_allocated_once_and_attention_reads_only_the_filled_part():
    layer = WindowLayer(capacity=8)
    first = torch.randn(2, 3, 5, 4)
    keys, values = layer.update(first, -first)
    address = layer._keys.data_ptr()
    for _ in range(2):
        keys, values = layer.update(torch.randn(2, 3, 1, 4), torch.randn(2, 3, 1, 4))
    assert layer._keys.data_ptr() == address
    assert keys.shape == values.shape == (2, 3, 7, 4)
    assert layer.get_seq_length() == 7
    assert torch.equal(keys[:, :, :5], first) and torch.equal(values[:, :, :5], -first)


def test_a_window_longer_than_its_cache_is_refused():
    layer = WindowLayer(capacity=4)
    layer.update(torch.zeros(1, 1, 3, 2), torch.zeros(1, 1, 3, 2))
    with pytest.raises(ValueError, match="holds 4 positions, got 5"):
        layer.update(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))
