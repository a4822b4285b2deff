"""The decoder's linear layers on the CPU, with weights reordered once for oneDNN.

A decoding step multiplies a few dozen rows (songs x 2 for guidance) by every weight matrix of
the decoder. At that shape the default CPU GEMM runs far below the core's peak; oneDNN's blocked
weight layout, prepared once at load time, makes the same step markedly faster (bench/throughput.py
measures it end to end). These are the kernels torch.compile's CPU freezing pass emits for a
linear layer; calling them directly spares every worker start a compile.
"""

from __future__ import annotations

import torch
from torch import nn


class PackedLinear(nn.Module):
    """`nn.Linear` for inference on the CPU, with its weight in oneDNN's layout."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        # Plain attributes, not buffers: the layout is opaque to state_dict and .to(), and a
        # packed model is never saved or moved.
        self.packed_weight = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), None)
        self.bias = None if linear.bias is None else linear.bias.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed_weight, self.bias, "none", [], "")


def can_pack(module: nn.Module) -> bool:
    """float32 weights on the CPU, and a torch build whose oneDNN linear kernels run here (not
    every platform's build has them; the stock layers then stay)."""
    if not torch.backends.mkldnn.is_available():
        return False
    if not all(p.device.type == "cpu" and p.dtype == torch.float32 for p in module.parameters()):
        return False
    try:
        with torch.inference_mode():
            PackedLinear(nn.Linear(8, 8))(torch.zeros(1, 8))
    except (RuntimeError, NotImplementedError):
        return False
    return True


def pack_linears(module: nn.Module) -> int:
    """Replace every nn.Linear below `module` in place; returns how many were replaced."""
    replaced = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear):
                setattr(parent, name, PackedLinear(child))
                replaced += 1
    return replaced
