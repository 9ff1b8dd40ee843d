"""What the seed did, kept as the benchmark's reference: every tower padded to max_length, two encoder calls per
pair (tower A, then tower B), batches of 2 pairs, fp32, battles in input order, `torch.no_grad` for inference.

The weights, the head and the tower inputs (`encoding_arena.encode_battles`) are the project's, so the reference
differs from the fast paths only in how it executes; its probabilities are the yardstick for their numerics.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

SEED_BATCH_PAIRS = 2


def pad_to(rows: Sequence[Sequence[int]], length: int, pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id lists -> `(N, length)` ids and mask, every row padded to `length` (the seed's padding="max_length")."""
    ids = torch.full((len(rows), length), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.as_tensor(row)
        mask[i, : len(row)] = 1
    return ids, mask


def seed_batches(features: dict[str, list], max_length: int, pad_token_id: int):
    """Batches of `SEED_BATCH_PAIRS` pairs in input order: (ids_a, mask_a, ids_b, mask_b, style_a, style_b, rows)."""
    n = len(features["input_ids_a"])
    for start in range(0, n, SEED_BATCH_PAIRS):
        rows = list(range(start, min(start + SEED_BATCH_PAIRS, n)))
        ids_a, mask_a = pad_to([features["input_ids_a"][i] for i in rows], max_length, pad_token_id)
        ids_b, mask_b = pad_to([features["input_ids_b"][i] for i in rows], max_length, pad_token_id)
        style_a = torch.tensor([features["style_a"][i] for i in rows])
        style_b = torch.tensor([features["style_b"][i] for i in rows])
        yield ids_a, mask_a, ids_b, mask_b, style_a, style_b, rows


def seed_logits(model, ids_a, mask_a, ids_b, mask_b, style_a, style_b) -> torch.Tensor:
    """`(B, 3)` logits with two encoder calls, one per tower (the seed's dual-tower loop)."""
    pooled_a = model.dropout(model.encode(ids_a, mask_a))
    pooled_b = model.dropout(model.encode(ids_b, mask_b))
    style = (style_a, style_b) if model.config.style_features else (None, None)
    logits = model.compare(pooled_a, pooled_b, *style)[0]  # (logits, rewards[, ...]): the first is the logits
    return logits
