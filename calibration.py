"""Temperature scaling: one scalar T that divides the logits, fitted to minimise log loss on held-out battles.

Written by hand: transformers, evaluate and scikit-learn have no temperature scaling (sklearn's
CalibratedClassifierCV fits sigmoid/isotonic maps per class, which would break the three probabilities' sum and the
model's A/B symmetry). ArenaModel divides its logits by `config.temperature`, so the fitted value is stored there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The T in [0.05, 20] that minimises `cross_entropy(logits / T, labels)`.

    Args:
        logits: `(N, 3)` logits as the model returns them (already divided by its current temperature).
        labels: `(N,)` class ids or `(N, 3)` soft labels.
    Returns the factor to multiply the model's current `config.temperature` by.
    """
    if logits.ndim != 2 or logits.shape[0] == 0 or logits.shape[0] != labels.shape[0]:
        raise ValueError(f"expected (N, 3) logits and N labels with N > 0, got {tuple(logits.shape)} and "
                         f"{tuple(labels.shape)}")
    logits, labels = logits.detach().double(), labels.detach()
    if labels.is_floating_point():
        labels = labels.double()
    # The loss is convex in 1/T; a bounded golden-section search on log T is exact enough and cannot diverge.
    low, high = torch.log(torch.tensor(MIN_TEMPERATURE)).item(), torch.log(torch.tensor(MAX_TEMPERATURE)).item()
    ratio = (5**0.5 - 1) / 2

    def loss(log_t: float) -> float:
        return F.cross_entropy(logits / torch.exp(torch.tensor(log_t, dtype=torch.float64)), labels).item()

    a, b = low + (1 - ratio) * (high - low), low + ratio * (high - low)
    fa, fb = loss(a), loss(b)
    for _ in range(60):
        if fa <= fb:
            high, b, fb = b, a, fa
            a = low + (1 - ratio) * (high - low)
            fa = loss(a)
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = loss(b)
    return float(torch.exp(torch.tensor((low + high) / 2)))
