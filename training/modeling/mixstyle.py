"""MixStyle (Zhou et al., "Domain Generalization with MixStyle", ICLR 2021): mixes the instance feature statistics
(channel mean and standard deviation over the spatial positions) of random pairs of samples after early backbone
stages, so that the network cannot rely on "style" (colour cast, contrast, texture statistics) that the generated
images share and real crops do not. Training only: in eval mode, and in the exported graph, it is the identity.
"""

from __future__ import annotations

import torch
from torch import nn


class MixStyle(nn.Module):
    """With probability `p` per batch: x -> sigma_mix * (x - mu) / sigma + mu_mix, with mu_mix, sigma_mix a
    Beta(alpha, alpha) mix of each sample's statistics and a random partner's (statistics detached, as in the
    paper). Draws come from torch's generator, so `torch.manual_seed` fixes them."""

    def __init__(self, p: float = 0.5, alpha: float = 0.1, eps: float = 1e-6) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0 or alpha <= 0:
            raise ValueError(f"MixStyle needs 0 <= p <= 1 and alpha > 0, got p={p}, alpha={alpha}")
        self.p, self.alpha, self.eps = p, alpha, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or x.shape[0] < 2 or float(torch.rand(())) >= self.p:
            return x
        mu = x.mean(dim=(2, 3), keepdim=True).detach()
        sigma = (x.var(dim=(2, 3), keepdim=True) + self.eps).sqrt().detach()
        normed = (x - mu) / sigma
        beta = torch.distributions.Beta(torch.tensor(self.alpha), torch.tensor(self.alpha))
        lam = beta.sample((x.shape[0], 1, 1, 1)).to(x.device, x.dtype)
        perm = torch.randperm(x.shape[0], device=x.device)
        mu_mix = lam * mu + (1 - lam) * mu[perm]
        sigma_mix = lam * sigma + (1 - lam) * sigma[perm]
        return normed * sigma_mix + mu_mix

    def extra_repr(self) -> str:
        return f"p={self.p}, alpha={self.alpha}"
