"""Pooled towers of a frozen encoder, computed once: what the head trains on in train.py's default recipe.

With the encoder frozen, its pooled output for a tower never changes, so running it every epoch (forward only,
but still ~all of the compute) is waste. `embed_towers` runs it once per battle, in length-sorted batches, and
stores `pooled_a` / `pooled_b` in place of the token ids; `ArenaModel.forward(pooled_a=..., pooled_b=...)` and
`ArenaCollator` take them from there. The pass is a cached `datasets.map`: a second run on the same battles,
encoder weights, pooling and precision reads the vectors from the cache. The pass runs in the precision
`precision_arena.prepare_for` picks (bf16 on CPUs with bf16 units; elsewhere fp32, through ONNX Runtime where it
is installed; unless forced).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from datasets.fingerprint import Hasher

from encoding_arena import ArenaCollator
from precision_arena import prepare_for, weights_digest

_SOURCE_HASH = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()


def embed_towers(dataset: datasets.Dataset, model: Any, batch_size: int = 16, chunk_size: int = 512,
                 precision: str = "auto") -> datasets.Dataset:
    """Replace `input_ids_a` / `input_ids_b` (from `battle_transforms.tokenize_arena`) by `pooled_a` / `pooled_b`:
    the `(hidden_size,)` float32 output of `model.encode_towers` for each battle, in eval mode and without
    gradients. Other columns (style, label, ...) are kept.

    Rows are read `chunk_size` at a time and sorted by length inside each chunk, so that batches of `batch_size`
    pad little. The model's train/eval mode is restored afterwards. `precision` ("auto", "fp32", "onnx-fp32", ...) is
    the encoder's arithmetic (`precision_arena`); the pooled vectors are float32 whichever it is.
    """
    collate = ArenaCollator(pad_token_id=model.config.encoder_config.pad_token_id or 0)
    device = next(model.parameters()).device
    runner, precision = prepare_for(model, precision, device)  # `model` itself in PyTorch fp32; a copy otherwise

    def encode(batch: dict[str, list]) -> dict[str, np.ndarray]:
        lengths = [max(len(a), len(b)) for a, b in zip(batch["input_ids_a"], batch["input_ids_b"])]
        order = np.argsort(lengths, kind="stable")
        hidden = model.config.encoder_config.hidden_size
        pooled_a = np.zeros((len(order), hidden), np.float32)
        pooled_b = np.zeros_like(pooled_a)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            towers = collate([{"input_ids_a": batch["input_ids_a"][i], "input_ids_b": batch["input_ids_b"][i]}
                              for i in rows])
            a, b = runner.encode_towers(*(towers[k].to(device) for k in ("input_ids_a", "attention_mask_a",
                                                                         "input_ids_b", "attention_mask_b")))
            pooled_a[rows], pooled_b[rows] = a.float().cpu().numpy(), b.float().cpu().numpy()
        return {"pooled_a": pooled_a, "pooled_b": pooled_b}

    # The map function closes over the model, which datasets cannot fingerprint: the key is made here instead.
    # The precision is part of it: bf16 vectors differ from fp32 ones (by ~1e-3), and a cache filled on one
    # machine must not answer for another precision.
    fingerprint = Hasher.hash([dataset._fingerprint, weights_digest(model.encoder), model.config.pooling,
                               getattr(model.config, "pool_layers", 1), precision, _SOURCE_HASH])
    was_training = model.training
    model.eval()
    runner.eval()
    try:
        with torch.inference_mode():
            pooled = dataset.map(encode, batched=True, batch_size=chunk_size, new_fingerprint=fingerprint,
                                 remove_columns=["input_ids_a", "input_ids_b"],
                                 desc="Pooling towers with the frozen encoder")
            if "prompt_ids" in pooled.column_names:  # a model with relevance terms
                pooled = _embed_relevance(pooled, model, runner, batch_size, chunk_size, fingerprint)
            return pooled
    finally:
        model.train(was_training)


def _embed_relevance(dataset: datasets.Dataset, model: Any, runner: Any, batch_size: int, chunk_size: int,
                     fingerprint: str) -> datasets.Dataset:
    """Replace the relevance inputs `prompt_ids`, `answer_ids_a/b` (`encoding_arena.encode_relevance`) by their
    vectors `prompt_pooled`, `answer_pooled_a/b` (`(2, hidden_size)` float32 each, `ArenaModel.encode_relevance`),
    in the same precision and with the same caching as the towers."""
    from encoding_arena import collate_relevance

    device = next(model.parameters()).device
    keys = ("prompt", "a", "b")

    def encode(batch: dict[str, list]) -> dict[str, np.ndarray]:
        columns = {"prompt": batch["prompt_ids"], "a": batch["answer_ids_a"], "b": batch["answer_ids_b"]}
        lengths = [max(len(seq) for k in keys for seq in columns[k][i]) for i in range(len(batch["prompt_ids"]))]
        order = np.argsort(lengths, kind="stable")
        hidden = model.config.encoder_config.hidden_size
        out = {k: np.zeros((len(order), 2, hidden), np.float32) for k in keys}
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            inputs = collate_relevance([{"prompt_ids": columns["prompt"][i], "answer_ids_a": columns["a"][i],
                                         "answer_ids_b": columns["b"][i]} for i in rows], model.config.pad_token_id or 0)
            ids = torch.cat([inputs[k] for k in ("prompt_input_ids", "answer_input_ids_a", "answer_input_ids_b")])
            mask = torch.cat([inputs[k] for k in ("prompt_attention_mask", "answer_attention_mask_a",
                                                  "answer_attention_mask_b")])
            vectors = runner.encode_relevance(ids.to(device), mask.to(device)).float().cpu().numpy()
            for n, k in enumerate(keys):
                out[k][rows] = vectors[n * len(rows) : (n + 1) * len(rows)]
        return {"prompt_pooled": out["prompt"], "answer_pooled_a": out["a"], "answer_pooled_b": out["b"]}

    return dataset.map(encode, batched=True, batch_size=chunk_size,
                       new_fingerprint=Hasher.hash([fingerprint, "relevance"]),
                       remove_columns=["prompt_ids", "answer_ids_a", "answer_ids_b"],
                       desc="Pooling prompts and answers with the frozen encoder")


__all__ = ["embed_towers"]
