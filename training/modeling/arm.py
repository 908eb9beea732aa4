"""Attribute Re-weighting Module (APR, Lin et al., arXiv 1703.07220 v3, eqs. 3-6).

APR: `c = sigmoid(V a_hat + b)`, `a = c * a_hat`, so each attribute score is gated by a function of all the
others (dependencies such as "dress -> female"). Our choices, both written down here on purpose:

- It acts on the concatenated LOGITS of all heads (not on probabilities): the per-head activation
  (softmax within a softmax head, sigmoid on a binary column) comes after, so softmax heads still sum to 1.
- We write the gate as `a = 2 * sigmoid(V a_hat + b) * a_hat` with V = 0, b = 0 at init, so the module starts
  as the exact identity and sits where the sigmoid's gradient is largest. This is APR's model family
  reparametrised, not a new one: `2 * sigmoid(z) * a_hat == sigmoid(z) * (2 * a_hat)` and the linear head
  producing `a_hat` absorbs the factor 2. APR's "large b" init would instead start near the identity with a
  saturated sigmoid (tiny gradients), and b = 0 without the 2 halves every logit at the start.
"""

from __future__ import annotations

import torch
from torch import nn


class AttributeReweighting(nn.Module):
    """Refine m attribute logits by a learned, input-dependent gate; identity at initialisation."""

    def __init__(self, m: int) -> None:
        super().__init__()
        self.gate = nn.Linear(m, m)
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)

    def forward(self, a_hat: torch.Tensor) -> torch.Tensor:
        return 2.0 * torch.sigmoid(self.gate(a_hat)) * a_hat
