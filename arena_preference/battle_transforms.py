"""What training does to loaded battles: tokenization into tower inputs (cached `datasets.map`), the A/B swap,
and the split by prompt (no prompt on both sides of a split)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np

import encoding_arena
from encoding_arena import STYLE_FEATURES, as_turns, encode_battles

logger = logging.getLogger(__name__)

_ENCODER_SOURCE_HASH = hashlib.sha256(Path(encoding_arena.__file__).read_bytes()).hexdigest()[:16]
# What tokenize_arena adds: int32 ids and float32 style features keep the cached Arrow files small.
TOWER_FEATURES = {
    "input_ids_a": datasets.List(datasets.Value("int32")),
    "input_ids_b": datasets.List(datasets.Value("int32")),
    "style_a": datasets.List(datasets.Value("float32"), length=len(STYLE_FEATURES)),
    "style_b": datasets.List(datasets.Value("float32"), length=len(STYLE_FEATURES)),
}

# What tokenize_arena adds for a model with relevance terms (encoding_arena.encode_relevance).
RELEVANCE_FEATURES = {
    **{key: datasets.List(datasets.List(datasets.Value("int32"))) for key in ("prompt_ids", "answer_ids_a",
                                                                                "answer_ids_b")},
    **{key: datasets.List(datasets.Value("float32"), length=len(encoding_arena.ANSWER_FLAGS))
       for key in ("answer_flags_a", "answer_flags_b")},
}


# ---------------------------------------------------------------------------------------------------------------
# Transforms: tokenization, A/B swap, split by prompt.
# ---------------------------------------------------------------------------------------------------------------


def tokenize_arena(
    dataset: datasets.Dataset,
    tokenizer: Any,
    max_length: int,
    truncation: str = "latest_turns",
    num_proc: int | None = None,
    cross_encoder: bool = False,
    relevance_max_length: int | None = None,
) -> datasets.Dataset:
    """Add tower inputs (`input_ids_a`, `input_ids_b`: token ids, no padding; `style_a`, `style_b`: floats) and
    `length`, the longer tower's token count (what `--train_sampling_strategy group_by_length` groups by).

    A batched, cached `datasets.map` over `encoding_arena.encode_battles` (the one function the pipeline uses
    too); with `cross_encoder`, the joint sequences of both orders (`encoding_arena.encode_joint_battles`).
    `num_proc` splits the work over processes; a fast tokenizer already batches in Rust, so it pays only
    for large sets on machines with spare cores. All other columns, `label` included, are kept. With
    `relevance_max_length` (a model with relevance terms), also the relevance inputs
    (`encoding_arena.encode_relevance`: `prompt_ids`, `answer_ids_a/b`, `answer_flags_a/b`).
    """

    def encode(batch: dict[str, list], encoder_source: str, **joint: bool) -> dict[str, list]:
        towers = encode_battles(batch["prompt"], batch["response_a"], batch["response_b"], tokenizer, max_length,
                                truncation, **joint)
        if relevance_max_length is not None:
            towers |= encoding_arena.encode_relevance(batch["prompt"], batch["response_a"], batch["response_b"],
                                                      tokenizer, relevance_max_length)
        return towers | {"length": [max(len(a), len(b)) for a, b in zip(towers["input_ids_a"],
                                                                        towers["input_ids_b"])]}

    features = datasets.Features({**dataset.features, **TOWER_FEATURES, "length": datasets.Value("int32"),
                                  **(RELEVANCE_FEATURES if relevance_max_length is not None else {})})
    # datasets fingerprints `encode` by reference to encode_battles, not by its code: the source hash in the
    # fn_kwargs makes a changed encoding_arena.py miss the cache instead of reusing stale tower inputs.
    return dataset.map(encode, batched=True, num_proc=num_proc, features=features,
                       fn_kwargs={"encoder_source": _ENCODER_SOURCE_HASH,
                                  **({"cross_encoder": True} if cross_encoder else {})},
                       desc=f"Encoding battles (max_length={max_length}, {truncation})")


_SWAPPED = {"response_a": "response_b", "model_a": "model_b", "input_ids_a": "input_ids_b", "style_a": "style_b",
            "pooled_a": "pooled_b", "answer_ids_a": "answer_ids_b", "answer_pooled_a": "answer_pooled_b",
            "answer_flags_a": "answer_flags_b"}


def swap_battles(dataset: datasets.Dataset) -> datasets.Dataset:
    """The same battles with A and B exchanged (responses, model names, tower inputs or pooled towers, style) and
    the label mirrored (winner_model_a <-> winner_model_b, tie stays). Ids are kept: concatenate with the
    original for augmentation, or average predictions on both for test-time swapping."""
    pairs = {a: b for a, b in _SWAPPED.items() if a in dataset.column_names}

    def swap(batch: dict[str, list]) -> dict[str, list]:
        out = {}
        for a, b in pairs.items():
            out[a], out[b] = batch[b], batch[a]
        if "label" in batch:
            out["label"] = [(1 - y) if y in (0, 1) else y for y in batch["label"]]
        if "labels" in batch:  # soft labels (distillation targets): P(A wins) and P(B wins) exchange places
            out["labels"] = [[y[1], y[0], y[2]] for y in batch["labels"]]
        return out

    return dataset.map(swap, batched=True, desc="Swapping A and B")


def prompt_group(prompt_turns: str | Sequence[str]) -> str:
    """The key that groups battles on one prompt: the first user turn, whitespace collapsed, lower-cased.

    >>> prompt_group(["  What is\\n2+2? ", "and 3+3?"])
    'what is 2+2?'
    """
    return " ".join(as_turns(prompt_turns, "prompt")[0].split()).lower()


def split_by_prompt(
    dataset: datasets.Dataset, validation_fraction: float = 0.2, seed: int = 0
) -> datasets.DatasetDict:
    """Split into train/validation so that every battle on one prompt (`prompt_group`) lands on the same side.

    Groups are shuffled with `seed` and moved to validation until it holds at least `validation_fraction` of
    the rows (so the fraction is approximate, from above).
    """
    if not 0 < validation_fraction < 1:
        raise ValueError(f"validation_fraction={validation_fraction}: expected a number between 0 and 1")
    keys = [prompt_group(p) for p in dataset["prompt"]]
    rows_of: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        rows_of.setdefault(key, []).append(i)
    groups = sorted(rows_of)
    order = np.random.default_rng(seed).permutation(len(groups))
    validation: list[int] = []
    target = validation_fraction * len(dataset)
    for g in order:
        if len(validation) >= target:
            break
        validation.extend(rows_of[groups[g]])
    if len(validation) == len(dataset):
        raise ValueError(f"{len(groups)} distinct prompt(s): too few to split by prompt")
    held = set(validation)
    train = [i for i in range(len(dataset)) if i not in held]
    return datasets.DatasetDict(
        {"train": dataset.select(train), "validation": dataset.select(sorted(validation))}
    )
