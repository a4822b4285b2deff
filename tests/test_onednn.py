"""Repacked CPU linear layers compute what nn.Linear computes."""

import copy

import pytest
import torch
from torch import nn
from transformers import MusicgenForConditionalGeneration

from tools.tiny_model import CODEBOOK_SIZE, NUM_CODEBOOKS
from worker.engine.onednn import PackedLinear, can_pack, pack_linears

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="no oneDNN")


def test_a_packed_decoder_keeps_its_outputs(tiny_model_dir):
    decoder = MusicgenForConditionalGeneration.from_pretrained(str(tiny_model_dir)).decoder.eval()
    reference = copy.deepcopy(decoder)
    linears = sum(isinstance(m, nn.Linear) for m in decoder.modules())
    assert pack_linears(decoder) == linears > 0
    assert not any(isinstance(m, nn.Linear) for m in decoder.modules())
    torch.manual_seed(0)
    ids = torch.randint(0, CODEBOOK_SIZE, (2 * NUM_CODEBOOKS, 7))
    encoder_hidden = torch.randn(2, 4, decoder.config.hidden_size)
    with torch.inference_mode():
        got = decoder(input_ids=ids, encoder_hidden_states=encoder_hidden).logits
        expected = reference(input_ids=ids, encoder_hidden_states=encoder_hidden).logits
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_a_packed_layer_with_bias_matches_linear():
    torch.manual_seed(0)
    linear = nn.Linear(16, 8)
    x = torch.randn(3, 5, 16)
    with torch.inference_mode():
        torch.testing.assert_close(PackedLinear(linear)(x), linear(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("dtype", "expected"), [(torch.float32, True), (torch.bfloat16, False), (torch.float64, False)]
)
def test_only_float32_cpu_weights_are_packed(dtype, expected):
    assert can_pack(nn.Linear(4, 4).to(dtype)) is expected


def test_a_build_without_the_kernels_keeps_the_stock_layers(monkeypatch):
    def missing(*args):
        raise NotImplementedError("mkldnn::_reorder_linear_weight")

    monkeypatch.setattr(torch.ops.mkldnn, "_reorder_linear_weight", missing)
    assert can_pack(nn.Linear(4, 4)) is False


def test_the_engine_packs_its_decoder_on_the_cpu(tiny_engine):
    modules = list(tiny_engine.model.decoder.modules())
    assert any(isinstance(m, PackedLinear) for m in modules)
    assert not any(isinstance(m, nn.Linear) for m in modules)
