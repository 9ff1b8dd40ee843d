"""pooled_towers: the frozen encoder's pooled towers, computed once, give the same head outputs as the token ids."""

from __future__ import annotations

import datasets
import pytest
import torch
from conftest import BATTLES

from arena_preference.battle_transforms import swap_battles, tokenize_arena
from encoding_arena import ArenaCollator
from arena_preference.pooled_towers import embed_towers
from precision_arena import weights_digest

# What "auto" resolves to changes these results (see PRECISION_TOLERANCE in conftest.py).
pytestmark = pytest.mark.precision_sensitive


@pytest.fixture()
def tokenized(tiny_tokenizer):
    rows = {key: [b[key] if isinstance(b[key], (str, int)) else " ".join(t or "" for t in b[key]) for b in BATTLES]
            for key in ("prompt", "response_a", "response_b", "label")}
    return tokenize_arena(datasets.Dataset.from_dict(rows), tiny_tokenizer, 64)


def test_pooled_towers_match_the_encoder_row_by_row_in_input_order(tiny_model, tokenized, tiny_tokenizer):
    tiny_model.train()  # embed_towers must pool in eval mode (no dropout) and give the mode back
    # sorting inside chunks, 2 batches; fp32 pinned: this is a test of exactness (the default is tested below)
    pooled = embed_towers(tokenized, tiny_model, batch_size=3, chunk_size=4, precision="fp32")
    assert tiny_model.training
    assert {"input_ids_a", "input_ids_b"}.isdisjoint(pooled.column_names)
    assert pooled["label"] == tokenized["label"] and pooled["style_a"] == tokenized["style_a"]
    tiny_model.eval()
    collate = ArenaCollator(tiny_tokenizer.pad_token_id)
    for i in range(len(tokenized)):  # one battle at a time: no padding, nothing to reorder
        towers = collate([tokenized[i]])
        with torch.no_grad():
            a, b = tiny_model.encode_towers(towers["input_ids_a"], towers["attention_mask_a"],
                                            towers["input_ids_b"], towers["attention_mask_b"])
        torch.testing.assert_close(torch.tensor(pooled[i]["pooled_a"]), a[0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(torch.tensor(pooled[i]["pooled_b"]), b[0], atol=1e-5, rtol=1e-4)


def test_the_head_on_pooled_towers_equals_the_model_on_token_ids(tiny_model, tokenized, tiny_tokenizer):
    tiny_model.eval()
    pooled = embed_towers(tokenized, tiny_model, precision="fp32")
    collate = ArenaCollator(tiny_tokenizer.pad_token_id)
    from_ids, from_pooled = collate(list(tokenized)), collate(list(pooled))
    assert set(from_pooled) == {"pooled_a", "pooled_b", "style_a", "style_b", "labels"}
    with torch.no_grad():
        expected = tiny_model(**from_ids)
        got = tiny_model(**from_pooled)
    torch.testing.assert_close(got.logits, expected.logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(got.loss, expected.loss, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="either pooled_a and pooled_b"):
        tiny_model(**from_ids, pooled_a=from_pooled["pooled_a"], pooled_b=from_pooled["pooled_b"])
    with pytest.raises(ValueError, match="required"):
        tiny_model(style_a=from_ids["style_a"], style_b=from_ids["style_b"])


def test_the_default_precision_pools_within_its_tolerance_of_fp32(tiny_model, tokenized, tiny_tokenizer):
    """`auto` pools in what it resolves to on this CPU (ARENA_AUTO_PRECISION can force bf16, onnx-fp32 or fp32):
    the head's probabilities on those towers stay within that precision's tolerance of fp32."""
    from conftest import PRECISION_TOLERANCE
    from precision_arena import prepare_for

    tiny_model.eval()
    resolved = prepare_for(tiny_model, "auto")[1]
    collate = ArenaCollator(tiny_tokenizer.pad_token_id)
    exact = collate(list(embed_towers(tokenized, tiny_model, precision="fp32")))
    default = collate(list(embed_towers(tokenized, tiny_model)))
    with torch.no_grad():
        expected = tiny_model(**exact).logits.softmax(-1)
        got = tiny_model(**default).logits.softmax(-1)
    torch.testing.assert_close(got, expected, atol=PRECISION_TOLERANCE[resolved], rtol=0)


def test_the_cache_key_follows_the_encoder_weights(tiny_model, tokenized):
    first = embed_towers(tokenized, tiny_model)
    again = embed_towers(tokenized, tiny_model)
    assert again._fingerprint == first._fingerprint
    digest = weights_digest(tiny_model.encoder)
    with torch.no_grad():
        next(tiny_model.encoder.parameters()).add_(0.5)  # a retrained encoder under the same name
    assert weights_digest(tiny_model.encoder) != digest
    changed = embed_towers(tokenized, tiny_model)
    assert changed._fingerprint != first._fingerprint
    assert changed["pooled_a"] != first["pooled_a"]


def test_swapping_a_pooled_battle_exchanges_its_towers_and_mirrors_the_label(tiny_model, tokenized):
    pooled = embed_towers(tokenized, tiny_model)
    swapped = swap_battles(pooled)
    assert swapped["pooled_a"] == pooled["pooled_b"] and swapped["pooled_b"] == pooled["pooled_a"]
    assert swapped["style_a"] == pooled["style_b"]
    assert swapped["label"] == [{0: 1, 1: 0, 2: 2}[y] for y in pooled["label"]]


def test_the_cache_key_follows_the_layers_pooled(tiny_model, tokenized):
    """A cache pooled from the last layer only must not be reused by a model that pools the last two."""
    tiny_model.config.pool_layers = 1
    one = embed_towers(tokenized, tiny_model)
    tiny_model.config.pool_layers = 2
    two = embed_towers(tokenized, tiny_model)
    assert two._fingerprint != one._fingerprint and two["pooled_a"] != one["pooled_a"]
