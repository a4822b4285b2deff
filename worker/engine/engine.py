"""MusicGen inference in token space: batched windows, classifier-free guidance, one decode per song.

The sampling loop drives the decoder directly instead of `MusicgenForConditionalGeneration.generate`
because that call always decodes audio at the end (EnCodec work between windows) and cannot give
each song in a batch its own seed. The loop reproduces transformers' semantics exactly: the same
delay pattern, the same guidance (uncond + scale * (cond - uncond) on the logits, the
unconditional half attending to a zeroed, fully masked text), then temperature and top-k.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable

import numpy as np
import torch
from transformers import AutoProcessor, MusicgenForConditionalGeneration
from transformers.cache_utils import Cache

from contract.memory import batch_for_memory, bytes_per_song
from contract.modelsize import DecoderShape
from contract.values import count
from worker.engine.generation import Conditioning, WindowRequest
from worker.engine.hf_output import quiet_loading
from worker.engine.kvcache import window_cache
from worker.engine.onednn import can_pack, pack_linears
from worker.engine.precision import choose_device, choose_dtype, gpu_of
from worker.settings import GenerationParams

log = logging.getLogger(__name__)

CPU_BATCH_SIZE = 8


def pick_device(choice: str = "auto", dtype: str = "auto") -> tuple[torch.device, torch.dtype]:
    """The device to compute on and its dtype (see worker/engine/precision.py for both choices). A GPU
    is self-tested first: GpuUnusable (worker/engine/precision.py) says why it cannot be used."""
    device = choose_device(torch, choice, dtype)
    return device, device_dtype(device, dtype)


def device_dtype(device: torch.device, override: str = "auto") -> torch.dtype:
    """The dtype for `device`: its GPU's capability decides unless `override` names one."""
    gpu = gpu_of(torch.cuda, device.index or 0) if device.type == "cuda" else None
    name = choose_dtype(gpu.capability if gpu else None, device.type, override)
    how = "as asked" if override != "auto" else "chosen"
    log.info("precision: %s %s on %s", name, how, gpu.describe() if gpu else "the CPU")
    return getattr(torch, name)


def limit_threads(threads: int) -> None:
    """torch's intra-op CPU threads for this process (its share of the machine's cores)."""
    torch.set_num_threads(threads)


class Engine:
    """A loaded MusicGen with its generation settings; `generate` then takes only data.

    The settings are fixed per engine object: `with_params` gives another engine with other
    settings over the same loaded model, so the model loads once however many settings use it.
    The engine owns the model it is given: on the CPU its decoder's linear layers are repacked
    for oneDNN (see worker/engine/onednn.py): the same results up to float rounding, sooner.
    """

    def __init__(
        self,
        model: MusicgenForConditionalGeneration,
        processor,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        self.model = model
        self.processor = processor
        self.device = device
        self.dtype = dtype
        self.params = GenerationParams()
        decoder_config = model.decoder.config
        self.num_codebooks: int = decoder_config.num_codebooks
        # Valid codes are 0 .. codebook_size - 1 (the pad token sits just above them).
        self.codebook_size: int = decoder_config.vocab_size
        self.pad_token_id: int = model.generation_config.pad_token_id
        self.audio_channels: int = getattr(decoder_config, "audio_channels", 1)
        if self.audio_channels not in (1, 2) or self.num_codebooks % self.audio_channels:
            raise ValueError(
                f"unsupported MusicGen decoder: {self.audio_channels} audio channels, "
                f"{self.num_codebooks} codebooks"
            )
        # Stereo checkpoints interleave the channels' codebooks (even = left, odd = right) and
        # each left/right pair shares its delay, as transformers' build_delay_pattern_mask does.
        self.delays: list[int] = [c // self.audio_channels for c in range(self.num_codebooks)]
        self.sample_rate: int = model.config.audio_encoder.sampling_rate
        self.frame_rate: float = model.config.audio_encoder.frame_rate
        hop = self.sample_rate / self.frame_rate
        if hop != int(hop):
            raise ValueError(f"codec hop length {hop} is not a whole number of samples")
        self.hop_length = int(hop)
        if device.type == "cpu" and can_pack(model.decoder):
            pack_linears(model.decoder)

    @classmethod
    def from_pretrained(
        cls, model_id: str, device: torch.device | None = None, dtype: str = "auto"
    ) -> Engine:
        """Load once: a hub id or a folder written by save_pretrained (works offline).

        `dtype` is a name from worker.engine.precision.DTYPE_CHOICES; "auto" picks it for the device.
        """
        dev, dtype = pick_device(dtype=dtype) if device is None else (device, device_dtype(device, dtype))
        with quiet_loading():
            # transformers picks SDPA attention for the decoder by default (EnCodec has none to pick).
            model = MusicgenForConditionalGeneration.from_pretrained(model_id, dtype=dtype)
            processor = AutoProcessor.from_pretrained(model_id)
        model.to(dev).eval()
        shape = DecoderShape.from_config(model.decoder.config)
        log.info(
            "loaded %s on %s (%s): %s, decoder of %d layers x %d hidden, %d codebooks; %s parameters in all",
            model_id, dev, str(dtype).removeprefix("torch."),
            "stereo" if shape.audio_channels == 2 else "mono",
            shape.layers, shape.hidden, shape.codebooks, count(model.num_parameters()),
        )
        return cls(model, processor, dev, dtype)

    def with_params(self, params: GenerationParams) -> Engine:
        """This engine with `params` as its settings, sharing the loaded model (and leaving this
        engine's own settings as they were)."""
        view = copy.copy(self)
        view.params = params
        return view

    def auto_batch_size(self, window_frames: int) -> int:
        """Songs per batch that fit in free GPU memory (a fixed default on the CPU).

        Per song: the self-attention KV cache of a full window for the conditional and the
        unconditional row (layers x 2 x hidden x positions x bytes, allocated once per window),
        plus the float32 logits and sampling buffers. 70% of the free memory is used, the rest
        is headroom for activations, the prompt's prefill and the allocator.
        """
        if self.device.type != "cuda":
            return CPU_BATCH_SIZE
        free_bytes, _ = torch.cuda.mem_get_info(self.device)
        per_song = bytes_per_song(
            DecoderShape.from_config(self.model.decoder.config),
            window_frames=window_frames,
            dtype_bytes=torch.finfo(self.dtype).bits // 8,
            guidance=self.params.guidance_scale != 1,
        )
        return batch_for_memory(free_bytes, per_song)

    @torch.inference_mode()
    def condition(self, prompt: str) -> Conditioning:
        inputs = self.processor(text=[prompt], return_tensors="pt").to(self.device)
        hidden = self.model.text_encoder(
            input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
        ).last_hidden_state
        text_size = self.model.text_encoder.config.hidden_size
        decoder_config = self.model.decoder.config
        if text_size != decoder_config.hidden_size and decoder_config.cross_attention_hidden_size is None:
            hidden = self.model.enc_to_dec_proj(hidden)
        mask = inputs["attention_mask"][0]
        return Conditioning(hidden=hidden[0] * mask[:, None], mask=mask)

    def _cross_inputs(self, rows: list[WindowRequest]) -> tuple[torch.Tensor, torch.Tensor]:
        """Text states for [conditional rows; unconditional rows], padded to the longest prompt."""
        length = max(row.conditioning.mask.shape[0] for row in rows)
        width = rows[0].conditioning.hidden.shape[-1]
        hidden = torch.zeros((2 * len(rows), length, width), dtype=self.dtype, device=self.device)
        mask = torch.zeros((2 * len(rows), length), dtype=torch.long, device=self.device)
        for i, row in enumerate(rows):
            n = row.conditioning.mask.shape[0]
            hidden[i, :n] = row.conditioning.hidden
            mask[i, :n] = row.conditioning.mask
        if self.params.guidance_scale == 1:
            return hidden[: len(rows)], mask[: len(rows)]
        return hidden, mask

    def _delayed_layout(self, rows: list[WindowRequest]) -> tuple[torch.Tensor, int, int]:
        """Tokens (B, K, 1 + P + F + D) in the delay pattern: -1 where a token is still to sample.

        Codebook c holds frame t at position t + 1 + delay(c) (D is the largest delay); position 0
        is the start token and the positions before/after a codebook's frames are padding,
        exactly as transformers lays out `decoder_input_ids` prompts.
        """
        prompt_frames = rows[0].prompt.shape[-1]
        if any(row.prompt.shape[-1] != prompt_frames for row in rows):
            raise ValueError("all rows of a window must have the same prompt length")
        new_frames = max(row.new_frames for row in rows)
        total = prompt_frames + new_frames
        length = 1 + total + self.delays[-1]
        tokens = torch.full((len(rows), self.num_codebooks, length), self.pad_token_id, dtype=torch.long)
        for codebook, delay in enumerate(self.delays):
            tokens[:, codebook, delay + 1 : delay + 1 + total] = -1
            for i, row in enumerate(rows):
                tokens[i, codebook, delay + 1 : delay + 1 + prompt_frames] = row.prompt[codebook]
        return tokens.to(self.device), prompt_frames, new_frames

    def _sample(self, logits: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
        """logits (2B or B, K, V) for the next position -> tokens (B, K)."""
        logits = logits.float()
        batch = len(generators)
        if self.params.guidance_scale != 1:
            cond, uncond = logits[:batch], logits[batch:]
            logits = uncond + self.params.guidance_scale * (cond - uncond)
        logits = logits / self.params.temperature
        top_k = min(self.params.top_k, logits.shape[-1])
        if top_k == 1:
            return logits.argmax(dim=-1)
        threshold = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        probs = torch.softmax(logits.masked_fill(logits < threshold, float("-inf")), dim=-1)
        # Exponential race (argmax of p / Exp(1)) samples the categorical exactly and lets each
        # row draw from its own generator.
        noise = torch.stack(
            [
                torch.empty(probs.shape[1:], device=self.device).exponential_(generator=g)
                for g in generators
            ]
        )
        return (probs / noise).argmax(dim=-1)

    def next_logits(
        self,
        ids: torch.Tensor,
        encoder_hidden: torch.Tensor,
        encoder_mask: torch.Tensor,
        cache: Cache,
    ) -> torch.Tensor:
        """One decoder forward pass over ids (rows x K, T) -> logits (rows, K, V) for the position
        after the last. Only that position goes through the K output heads: a prompt's earlier
        positions need no logits, and skipping them saves the heads' work and their memory."""
        decoder = self.model.decoder
        hidden = decoder.model(
            input_ids=ids,
            encoder_hidden_states=encoder_hidden,
            encoder_attention_mask=encoder_mask,
            past_key_values=cache,
            use_cache=True,
        ).last_hidden_state[:, -1]
        return torch.stack([head(hidden) for head in decoder.lm_heads], dim=1)

    @torch.inference_mode()
    def generate(
        self,
        rows: list[WindowRequest],
        on_step: Callable[[int], None] | None = None,
    ) -> list[torch.Tensor]:
        """One window for every row, in one batched decoding loop; returns new codes (K, F) per row.

        Rows share the prompt length; each may ask for fewer frames than the longest and gets
        exactly what it asked for.
        """
        tokens, prompt_frames, new_frames = self._delayed_layout(rows)
        batch, k, length = tokens.shape
        cfg = self.params.guidance_scale != 1
        encoder_hidden, encoder_mask = self._cross_inputs(rows)
        generators = []
        for row in rows:
            generator = torch.Generator(device=self.device)
            generator.manual_seed(row.seed)
            generators.append(generator)

        cache = window_cache(self.model.decoder.config.num_hidden_layers, length)
        start = prompt_frames + 1  # positions [0, start) are known before sampling
        step_input = tokens[:, :, :start]
        for position in range(start, length):
            ids = step_input.reshape(batch * k, -1)
            if cfg:
                ids = ids.repeat(2, 1)
            logits = self.next_logits(ids, encoder_hidden, encoder_mask, cache)
            sampled = self._sample(logits, generators)
            column = tokens[:, :, position]
            tokens[:, :, position] = torch.where(column == -1, sampled, column)
            step_input = tokens[:, :, position : position + 1]
            if on_step is not None:
                on_step(position - start + 1)

        first = [delay + 1 + prompt_frames for delay in self.delays]
        codes = torch.stack(
            [tokens[:, c, first[c] : first[c] + new_frames] for c in range(k)], dim=1
        ).cpu()
        return [codes[i, :, : row.new_frames].clone() for i, row in enumerate(rows)]

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor, num_samples: int, chunk_frames: int = 1500) -> np.ndarray:
        """EnCodec once per song: codes (K, T) -> float32 samples, exactly num_samples long:
        (num_samples,) for mono, (num_samples, 2) for stereo.

        Stereo songs decode their even (left) and odd (right) codebooks separately, as
        transformers' generate does. Long songs are decoded in chunks with a second of context
        on each side, so memory stays bounded and chunk seams fall outside the samples kept.
        """
        channels = [codes[c :: self.audio_channels] for c in range(self.audio_channels)]
        samples = [self._decode_channel(channel, chunk_frames) for channel in channels]
        if samples[0].shape[0] < num_samples:
            raise ValueError(f"decoded {samples[0].shape[0]} samples, need {num_samples}")
        if self.audio_channels == 1:
            return samples[0][:num_samples]
        return np.stack([channel[:num_samples] for channel in samples], axis=1)

    def _decode_channel(self, codes: torch.Tensor, chunk_frames: int) -> np.ndarray:
        total = codes.shape[-1]
        context = max(1, round(self.frame_rate))
        pieces = []
        for start in range(0, total, chunk_frames):
            stop = min(total, start + chunk_frames)
            left, right = max(0, start - context), min(total, stop + context)
            chunk = codes[:, left:right].to(self.device)[None, None]
            audio = self.model.audio_encoder.decode(chunk, audio_scales=[None]).audio_values[0, 0]
            keep_from = (start - left) * self.hop_length
            pieces.append(audio[keep_from : keep_from + (stop - start) * self.hop_length].float().cpu())
        return torch.cat(pieces).numpy()
