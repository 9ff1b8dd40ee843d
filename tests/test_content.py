"""Relevance content terms and the label-free content pairs: encoding_arena.encode_relevance /
answer_flags, modeling_arena.ArenaRelevanceTerms / content_pair_loss, and their path through the collator, the
frozen recipe's cache, the pipeline and a remote-code load."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import BATTLES, run_without_project

from encoding_arena import (ANSWER_FLAGS, ArenaCollator, answer_flags, encode_battles, encode_relevance,
                            with_relevance)

KEYS = ("prompt", "response_a", "response_b")
ON_TOPIC = [
    {"prompt": "How do I boil an egg?", "response_a": "Put the egg in boiling water for eight minutes, then cool it.",
     "response_b": "Paris is the capital of France and its largest city.", "label": 0},
    {"prompt": ["Name a fruit.", "And a vegetable?"], "response_a": ["An apple.", "A carrot."],
     "response_b": ["A bicycle.", "The moon is far away."], "label": 1},
]


@pytest.fixture()
def relevance_model():
    from arena_preference.model_loading import load_model

    model, _ = load_model("embedded:tiny-deberta", max_length=64, relevance=True, content_pairs_weight=0.5)
    with torch.no_grad():  # a head far from its zero start, so that every term shows
        for param in model.classifier.parameters():
            param.normal_(0, 0.5)
        model.relevance_terms.side.weight.copy_(torch.tensor([[3.0, 1.0, -2.0, -1.0, -1.5]]))
        model.relevance_terms.tie.weight.normal_(0, 0.5)
    return model.eval()


def batch_of(battles, tokenizer, config):
    columns = [[b[k] for b in battles] for k in KEYS]
    enc = with_relevance(encode_battles(*columns, tokenizer, 64), *columns, tokenizer, config)
    features = [{k: v[i] for k, v in enc.items()} | {"labels": battles[i]["label"]} for i in range(len(battles))]
    return ArenaCollator(pad_token_id=0)(features)


def swapped(batch):
    out = {}
    for key, value in batch.items():
        out[key[:-1] + ("b" if key.endswith("a") else "a") if key[-2:] in ("_a", "_b") else key] = value
    return out


# ----------------------------------------------------------------------------------------------------- encoding
def test_encode_relevance_gives_whole_texts_and_last_turns(tiny_tokenizer):
    enc = encode_relevance(*([b[k] for b in ON_TOPIC] for k in KEYS), tiny_tokenizer, max_length=16)
    single, multi = (tuple(enc[k][i] for k in ("prompt_ids", "answer_ids_a", "answer_ids_b")) for i in range(2))
    assert all(len(whole) > 0 and last == [] for whole, last in single)  # single turn: the last turn is the whole
    assert all(len(whole) > 0 and len(last) > 0 for whole, last in multi)
    assert max(len(seq) for side in multi + single for seq in side) <= 16
    # the last turn is the last turn's text on its own
    expected = tiny_tokenizer("A carrot.", truncation=True, max_length=16)["input_ids"]
    assert enc["answer_ids_a"][1][1] == expected


def test_answer_flags_see_empty_cut_off_and_repeated_answers():
    whole = "Boil the egg for eight minutes. Then cool it in cold water and peel it carefully."
    assert answer_flags([whole]) == [0.0, 0.0, 0.0]
    assert answer_flags(["", "  "])[0] == 1.0
    assert answer_flags(["Boil the egg for eight minutes. Then cool it in cold water and"])[1] == 1.0
    assert answer_flags(["```py\nfor x in range(10) and then some more words here"])[1] == 0.0  # open code block
    assert 0.35 < answer_flags([whole + " " + whole])[2] <= 0.5  # said twice: -> 0.5 as the answer grows
    assert len(answer_flags(["x"])) == len(ANSWER_FLAGS)


# -------------------------------------------------------------------------------------------------------- model
def test_relevance_model_is_symmetric_in_a_and_b(relevance_model, tiny_tokenizer):
    batch = batch_of(BATTLES + ON_TOPIC, tiny_tokenizer, relevance_model.config)
    with torch.no_grad():
        own, other = relevance_model(**batch), relevance_model(**swapped(batch))
    p, q = own.logits.softmax(-1), other.logits.softmax(-1)
    assert (p[:, 0] - p[:, 1]).abs().max() > 1e-2
    torch.testing.assert_close(p[:, [1, 0, 2]], q, atol=1e-6, rtol=0)
    torch.testing.assert_close(own.content_logits.softmax(-1)[:, [1, 0, 2]], other.content_logits.softmax(-1),
                               atol=1e-6, rtol=0)


def test_the_content_views_own_weight_moves_the_content_view_only(relevance_model, tiny_tokenizer):
    batch = batch_of(ON_TOPIC, tiny_tokenizer, relevance_model.config)
    with torch.no_grad():
        before = relevance_model(**batch)
        relevance_model.relevance_terms.content_side.weight.fill_(5.0)
        after = relevance_model(**batch)
    torch.testing.assert_close(after.logits, before.logits)
    assert (after.content_logits - before.content_logits).abs().max() > 1e-2


def test_relevance_terms_are_content_not_style(relevance_model, tiny_tokenizer):
    """Without style weights the content view is the full view; the relevance terms move both views alike."""
    batch = batch_of(ON_TOPIC, tiny_tokenizer, relevance_model.config)
    with torch.no_grad():
        for linear in (relevance_model.classifier.style, relevance_model.classifier.style_tie):
            linear.weight.zero_()
        out = relevance_model(**batch)
        torch.testing.assert_close(out.logits, out.content_logits)
        relevance_model.relevance_terms.side.weight.zero_()
        relevance_model.relevance_terms.tie.weight.zero_()
        without = relevance_model(**batch)
    assert (out.content_logits - without.content_logits).abs().max() > 1e-3


def test_single_turn_last_slot_takes_the_whole_texts_vector(relevance_model, tiny_tokenizer):
    batch = batch_of(ON_TOPIC, tiny_tokenizer, relevance_model.config)
    with torch.no_grad():
        vectors = relevance_model.encode_relevance(batch["prompt_input_ids"], batch["prompt_attention_mask"])
        alone = relevance_model.encode(*(batch[k][1:2, 1] for k in ("prompt_input_ids", "prompt_attention_mask")))
    torch.testing.assert_close(vectors[0, 1], vectors[0, 0])  # single turn: copied
    assert not torch.allclose(vectors[1, 1], vectors[1, 0])  # multi-turn: its own encoding
    torch.testing.assert_close(vectors[1, 1], alone[0], atol=1e-5, rtol=1e-5)


def test_pooled_relevance_inputs_give_the_same_output(relevance_model, tiny_tokenizer):
    """What the frozen recipe caches (vectors) and what the pipeline sends (token ids) give the same logits."""
    batch = batch_of(BATTLES, tiny_tokenizer, relevance_model.config)
    with torch.no_grad():
        expected = relevance_model(**batch).logits
        vectors = relevance_model.encode_relevance(
            torch.cat([batch["prompt_input_ids"], batch["answer_input_ids_a"], batch["answer_input_ids_b"]]),
            torch.cat([batch["prompt_attention_mask"], batch["answer_attention_mask_a"],
                       batch["answer_attention_mask_b"]]))
        prompt, a, b = vectors.split(len(BATTLES))
        pooled = {k: v for k, v in batch.items() if not k.startswith(("prompt_", "answer_input", "answer_attention"))}
        got = relevance_model(**pooled, prompt_pooled=prompt, answer_pooled_a=a, answer_pooled_b=b).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_relevance_inputs_are_required(relevance_model, tiny_tokenizer):
    batch = batch_of(BATTLES, tiny_tokenizer, relevance_model.config)
    with pytest.raises(ValueError, match="answer_flags_a"):
        relevance_model(**{k: v for k, v in batch.items() if not k.startswith("answer_flags")})
    with pytest.raises(ValueError, match="prompt_input_ids"):
        relevance_model(**{k: v for k, v in batch.items() if not k.startswith("prompt_")})


def test_a_fresh_model_starts_without_relevance_effect():
    from arena_preference.model_loading import load_model

    model, _ = load_model("embedded:tiny-deberta", relevance=True)
    assert all(not p.any() for p in model.relevance_terms.parameters())


def test_relevance_is_a_classify_head_term():
    from arena_preference.model_loading import load_model

    with pytest.raises(ValueError, match="classify head"):
        load_model("embedded:tiny-deberta", head="rank", relevance=True)


# ------------------------------------------------------------------------------------------------ content pairs
def _pair_inputs(batch: int = 8, hidden: int = 16, seed: int = 0):
    """Prompts and answers as vectors: each battle's answers lie near its own prompt (on topic)."""
    generator = torch.Generator().manual_seed(seed)
    prompt = torch.randn(batch, 2, hidden, generator=generator)
    answer_a = prompt + 0.3 * torch.randn(batch, 2, hidden, generator=generator)
    answer_b = prompt + 0.3 * torch.randn(batch, 2, hidden, generator=generator)
    flags = torch.zeros(batch, len(ANSWER_FLAGS))
    return prompt, answer_a, answer_b, flags, flags.clone()


def test_content_pairs_teach_relevance_and_the_flags():
    from modeling_arena import ArenaRelevanceTerms, content_pair_loss

    terms = ArenaRelevanceTerms()
    torch.nn.init.zeros_(terms.side.weight)
    torch.nn.init.zeros_(terms.content_side.weight)
    inputs = _pair_inputs()
    start = content_pair_loss(terms, *inputs).item()
    assert start == pytest.approx(torch.nn.functional.softplus(torch.tensor(0.0)).item())  # log 2: no preference
    votes_fit = terms.side.weight.detach().clone()
    optimizer = torch.optim.SGD(terms.parameters(), lr=1.0)
    for _ in range(50):
        optimizer.zero_grad()
        content_pair_loss(terms, *inputs).backward()
        optimizer.step()
    weight = terms.content_side.weight[0]
    assert content_pair_loss(terms, *inputs).item() < start / 2
    assert weight[0] > 0 and weight[1] > 0  # closer to the prompt wins
    assert all(weight[2 + i] < 0 for i in range(len(ANSWER_FLAGS)))  # empty, cut-off, repeated lose
    # only the content view's own weight learns: the full view's terms stay the votes'
    assert torch.equal(terms.side.weight, votes_fit)
    assert terms.tie.weight.grad is None or not terms.tie.weight.grad.any()  # pairs have no tie


def test_content_pairs_weigh_the_towers_terms_too():
    """With the head and the towers, an off-topic answer whose tower the head likes makes the pair harder."""
    from modeling_arena import ArenaClassifyHead, ArenaRelevanceTerms, content_pair_loss

    terms, head = ArenaRelevanceTerms(), ArenaClassifyHead(4)
    torch.nn.init.zeros_(terms.content_side.weight)
    torch.nn.init.zeros_(terms.side.weight)
    inputs = _pair_inputs()
    towers = (torch.randn(8, 4), torch.randn(8, 4))
    plain = content_pair_loss(terms, *inputs).item()
    with torch.no_grad():
        head.content.weight.normal_(0, 3.0)
    with_towers = content_pair_loss(terms, *inputs, head=head, towers=towers)
    assert with_towers.item() != pytest.approx(plain)
    with_towers.backward()
    assert head.content.weight.grad is None  # the towers' weights are the votes


def test_content_pairs_skip_answers_to_the_same_question():
    """Battles on one prompt are not each other's off-topic answers: with a single prompt, only the flags'
    pairs remain, and the relevance weights get no gradient."""
    from modeling_arena import ArenaRelevanceTerms, content_pair_loss

    terms = ArenaRelevanceTerms()
    prompt, a, b, fa, fb = _pair_inputs()
    prompt = prompt[:1].expand_as(prompt).clone()
    content_pair_loss(terms, prompt, a, b, fa, fb).backward()
    assert terms.content_side.weight.grad[0, :2].abs().max() == 0
    assert terms.content_side.weight.grad[0, 2:].abs().max() > 0


def test_content_pairs_weight_adds_the_pair_loss_in_training_only(relevance_model, tiny_tokenizer):
    batch = batch_of(BATTLES + ON_TOPIC, tiny_tokenizer, relevance_model.config)
    relevance_model.config.content_pairs_weight = 0.0
    relevance_model.train()
    torch.manual_seed(0)
    plain = relevance_model(**batch).loss
    relevance_model.config.content_pairs_weight = 0.5
    torch.manual_seed(0)
    weighted = relevance_model(**batch).loss
    assert weighted > plain  # same seed, same dropout: the difference is the pairs' loss
    relevance_model.eval()
    evaluated = relevance_model(**batch).loss
    relevance_model.config.content_pairs_weight = 0.0
    torch.testing.assert_close(evaluated, relevance_model(**batch).loss)  # evaluation: the vote loss only


# --------------------------------------------------------------------------------------- frozen cache, pipeline
def test_frozen_recipe_caches_the_relevance_vectors(relevance_model, tiny_tokenizer):
    from datasets import Dataset

    from arena_preference.battle_transforms import swap_battles, tokenize_arena
    from arena_preference.pooled_towers import embed_towers

    data = Dataset.from_list([{k: json.dumps(b[k] if isinstance(b[k], list) else [b[k]]) for k in KEYS}
                              | {"label": b["label"]} for b in ON_TOPIC + BATTLES[:1]])
    tokens = tokenize_arena(data, tiny_tokenizer, 64, relevance_max_length=32)
    pooled = embed_towers(tokens, relevance_model, batch_size=2, precision="fp32")
    assert {"prompt_pooled", "answer_pooled_a", "answer_pooled_b", "answer_flags_a"} <= set(pooled.column_names)
    assert "prompt_ids" not in pooled.column_names
    batch = ArenaCollator(pad_token_id=0)([{k: row[k] for k in row if k not in KEYS} for row in pooled])
    ids_batch = ArenaCollator(pad_token_id=0)([{k: row[k] for k in row if k not in KEYS} for row in tokens])
    with torch.no_grad():
        torch.testing.assert_close(relevance_model(**batch).logits, relevance_model(**ids_batch).logits,
                                   atol=1e-5, rtol=1e-5)
    back = swap_battles(pooled)
    assert back[0]["answer_pooled_a"] == pooled[0]["answer_pooled_b"]
    assert back[0]["prompt_pooled"] == pooled[0]["prompt_pooled"]


def test_pipeline_style_control_and_swap_tta_read_the_relevance_terms(relevance_model, tiny_tokenizer):
    from pipeline_arena import ArenaPreferencePipeline

    judge = ArenaPreferencePipeline(model=relevance_model, tokenizer=tiny_tokenizer, precision="fp32")
    battles = [{k: b[k] for k in KEYS} for b in ON_TOPIC + BATTLES]
    other = [{"prompt": b["prompt"], "response_a": b["response_b"], "response_b": b["response_a"]} for b in battles]
    one = judge(battles, batch_size=3, style_control=True, swap_tta=True)
    two = judge(other, batch_size=2, style_control=True, swap_tta=True)
    for r, s in zip(one, two):
        assert r["winner_model_a"] == pytest.approx(s["winner_model_b"], abs=1e-6)
        assert r["style_controlled"]["winner_model_a"] == pytest.approx(s["style_controlled"]["winner_model_b"],
                                                                        abs=1e-6)
    single = judge(battles[0], style_control=True)
    assert single["style_controlled"]["winner_model_a"] == pytest.approx(
        judge(battles[:2], style_control=True)[0]["style_controlled"]["winner_model_a"], abs=1e-5)


def test_relevance_model_loads_as_remote_code_without_the_project(tmp_path, relevance_model, tiny_tokenizer):
    repo = tmp_path / "repo"
    relevance_model.save_pretrained(repo)
    tiny_tokenizer.save_pretrained(repo)
    batch = batch_of(ON_TOPIC + BATTLES, tiny_tokenizer, relevance_model.config)
    torch.save(dict(batch), tmp_path / "batch.pt")
    with torch.no_grad():
        expected = relevance_model(**batch).content_logits
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = f"""
import torch
from transformers import AutoModel
batch = torch.load({str(tmp_path / 'batch.pt')!r}, weights_only=True)
model = AutoModel.from_pretrained({str(repo)!r}, trust_remote_code=True).eval()
assert model.config.relevance and model.relevance_terms is not None
with torch.no_grad():
    torch.save(model(**batch).content_logits, {str(tmp_path / 'content.pt')!r})
"""
    result = run_without_project(code, elsewhere)
    assert result.returncode == 0, result.stderr[-3000:]
    torch.testing.assert_close(torch.load(tmp_path / "content.pt", weights_only=True), expected)


def test_train_options_turn_relevance_and_the_pairs_on_and_off():
    from arena_preference.recipe import FRESH_CONTENT_PAIRS_WEIGHT, FRESH_RELEVANCE, relevance_options
    from arena_preference.training_arguments import ModelArguments

    fresh = relevance_options(ModelArguments(model_name_or_path="embedded:tiny-deberta"))
    assert fresh == {"relevance": FRESH_RELEVANCE, "content_pairs_weight": FRESH_CONTENT_PAIRS_WEIGHT}
    off = relevance_options(ModelArguments(model_name_or_path="embedded:tiny-deberta", content_pairs_weight=0.0))
    assert off["content_pairs_weight"] == 0.0
    assert relevance_options(ModelArguments(model_name_or_path="embedded:tiny-deberta", relevance=False)) == {
        "relevance": False}
    assert relevance_options(ModelArguments(model_name_or_path="embedded:tiny-deberta", head="rank")) == {
        "relevance": False}


def test_fine_tuning_takes_the_pairs_gradient_into_the_encoder(relevance_model, tiny_tokenizer):
    """With the encoder trained too (--freeze_encoder false), the pair loss reaches it: the flags' broken copies
    are built out of place."""
    batch = batch_of(BATTLES + ON_TOPIC, tiny_tokenizer, relevance_model.config)
    relevance_model.train()
    relevance_model(**batch).loss.backward()
    grads = [p.grad for p in relevance_model.encoder.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().max() > 0 for g in grads)
