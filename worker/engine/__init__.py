"""The model side: MusicGen inference in token space, the KV cache, the device and precision,
oneDNN on the CPU, and what transformers prints while a model loads."""
