import json
import math

import pytest
import torch
from transformers import pipeline

from conftest import BATTLES, run_without_project
from configuration_arena import ArenaConfig
from encoding_arena import as_turns
from modeling_arena import ArenaModel
from pipeline_arena import SORT_WINDOW_BATCHES, ArenaPreferencePipeline

# What "auto" resolves to changes these results (see PRECISION_TOLERANCE in conftest.py).
pytestmark = pytest.mark.precision_sensitive

PROBS = ("winner_model_a", "winner_model_b", "winner_tie")


def _battles(n):
    """n battles of varied lengths (so length sorting reorders them), single- and multi-turn."""
    words = "the answer is a list of steps with code and more words".split()
    out = []
    for i in range(n):
        a = " ".join(words[: 1 + (i * 7) % len(words)]) * (1 + i % 3)
        b = " ".join(reversed(words[: 1 + (i * 5) % len(words)])) * (1 + (i + 1) % 4)
        if i % 4 == 3:
            out.append({"prompt": [f"question {i}", "and then?"], "response_a": [a, "ok"], "response_b": [b, None]})
        else:
            out.append({"prompt": f"question {i}?", "response_a": a, "response_b": b})
    return out


def _swapped(battle):
    return {"prompt": battle["prompt"], "response_a": battle["response_b"], "response_b": battle["response_a"]}


@pytest.fixture()
def judge(tiny_model, tiny_tokenizer):
    generator = torch.Generator().manual_seed(0)  # its own: the global RNG's state depends on the tests before
    with torch.no_grad():  # a classifier far from uniform, so A/B differences show
        for weight in tiny_model.classifier.parameters():
            weight.normal_(std=1.0, generator=generator)
    return ArenaPreferencePipeline(model=tiny_model.eval(), tokenizer=tiny_tokenizer)


@pytest.fixture()
def rank_judge(tiny_model, tiny_tokenizer):
    config = ArenaConfig(encoder_config=tiny_model.config.encoder_config.to_dict(), head="rank", max_length=64)
    model = ArenaModel(config, encoder=tiny_model.encoder).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        model.ranker.reward.weight.normal_(std=1.0, generator=generator)
        model.ranker.style_reward.weight.normal_(std=1.0, generator=generator)
    return ArenaPreferencePipeline(model=model, tokenizer=tiny_tokenizer)


def _probs(result):
    return [result[k] for k in PROBS]


def _assert_same(got, expected, atol=1e-5):
    """Same labels, probabilities within atol (batches pad differently, so floats may differ in the last bits)."""
    got, expected = list(got), list(expected)
    assert [r["label"] for r in got] == [r["label"] for r in expected]
    torch.testing.assert_close(torch.tensor([_probs(r) for r in got]), torch.tensor([_probs(r) for r in expected]),
                               atol=atol, rtol=0)


def test_one_battle_gives_probabilities_and_the_most_likely_label(judge):
    result = judge(BATTLES[0])
    assert set(result) == {*PROBS, "label"}
    assert math.isclose(sum(_probs(result)), 1.0, abs_tol=1e-6)
    assert result["label"] == max(PROBS, key=result.__getitem__)


def test_pipeline_in_fp32_matches_the_model_called_directly(judge, tiny_batch):
    exact = ArenaPreferencePipeline(model=judge.model, tokenizer=judge.tokenizer, precision="fp32")
    with torch.no_grad():
        expected = judge.model(**tiny_batch).logits.softmax(-1)
    got = torch.tensor([_probs(r) for r in exact(BATTLES, batch_size=4)])
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


def test_the_default_precision_stays_within_its_tolerance_of_fp32(judge, tiny_batch):
    """`auto` resolves by CPU (bf16, onnx-fp32 or fp32; ARENA_AUTO_PRECISION picks one on any CPU): the probabilities
    must stay within that precision's tolerance of the model in PyTorch fp32."""
    from conftest import PRECISION_TOLERANCE

    with torch.no_grad():
        expected = judge.model(**tiny_batch).logits.softmax(-1)
    got = torch.tensor([_probs(r) for r in judge(BATTLES, batch_size=4)])
    torch.testing.assert_close(got, expected, atol=PRECISION_TOLERANCE[judge.precision], rtol=0)


def test_strings_turn_lists_and_kaggle_json_strings_give_the_same_result(judge):
    battle = BATTLES[1]  # multi-turn, with a null turn
    as_lists = {k: as_turns(battle[k], k) for k in ("prompt", "response_a", "response_b")}
    as_json = {k: json.dumps(battle[k]) for k in ("prompt", "response_a", "response_b")}
    reference = judge(battle)
    assert judge(as_lists) == reference and judge(as_json) == reference
    single = {"prompt": "Hi", "response_a": "Hello", "response_b": "Hey"}
    assert judge({k: [v] for k, v in single.items()}) == judge(single) == judge(**single)


def test_list_tuple_generator_and_dataset_inputs(judge):
    from datasets import Dataset

    battles = _battles(9)
    expected = [judge(b) for b in battles]
    _assert_same(judge(battles, batch_size=4), expected)
    _assert_same(judge(tuple(battles), batch_size=4), expected)
    streamed = judge((b for b in battles), batch_size=4)
    assert not isinstance(streamed, list)
    _assert_same(streamed, expected)
    rows = [{k: as_turns(b[k], k) for k in ("prompt", "response_a", "response_b")} | {"id": i}
            for i, b in enumerate(battles)]
    _assert_same(judge(Dataset.from_list(rows), batch_size=4), expected)
    assert judge([]) == []


def test_batching_sorts_by_length_yet_keeps_input_order(judge):
    battles = _battles(40)
    one = judge(battles, batch_size=1)
    _assert_same(judge(battles, batch_size=16), one, atol=1e-5)
    # each result belongs to its own battle, not to a neighbour in the sorted order
    assert len({tuple(_probs(r)) for r in one}) > 30


def test_a_stream_is_read_one_window_at_a_time(judge):
    taken = []

    def battles():
        for i, battle in enumerate(_battles(70)):
            taken.append(i)
            yield battle

    results = judge(battles(), batch_size=2)
    first = next(iter(results))
    window = 2 * SORT_WINDOW_BATCHES
    assert set(first) >= set(PROBS)
    assert len(taken) == window
    assert len(list(results)) == 69 and len(taken) == 70


def test_the_classify_head_is_symmetric_in_a_and_b_with_and_without_swap_tta(judge):
    battle = BATTLES[2]
    plain, plain_swapped = judge(battle), judge(_swapped(battle))
    assert abs(plain["winner_model_a"] - plain["winner_model_b"]) > 1e-3
    assert plain["winner_model_a"] == pytest.approx(plain_swapped["winner_model_b"], abs=1e-6)  # by construction
    tta, tta_swapped = judge(battle, swap_tta=True), judge(_swapped(battle), swap_tta=True)
    assert tta["winner_model_a"] == pytest.approx(tta_swapped["winner_model_b"], abs=1e-6)
    assert tta["winner_model_b"] == pytest.approx(tta_swapped["winner_model_a"], abs=1e-6)
    assert tta["winner_tie"] == pytest.approx(tta_swapped["winner_tie"], abs=1e-6)
    # and it is the mean of both orders, mapped back
    assert tta["winner_model_a"] == pytest.approx((plain["winner_model_a"] + plain_swapped["winner_model_b"]) / 2,
                                                  abs=1e-6)
    batched = judge([battle, _swapped(battle)] * 3, swap_tta=True, batch_size=4)
    assert _probs(batched[0]) == pytest.approx(_probs(tta), abs=1e-6)


def test_return_logits_softmax_to_the_probabilities(judge):
    for swap_tta in (False, True):
        result = judge(BATTLES[0], return_logits=True, swap_tta=swap_tta)
        probs = torch.tensor(result["logits"]).softmax(-1)
        assert probs.tolist() == pytest.approx(_probs(result), abs=1e-6)


def test_rank_head_returns_rewards_that_explain_the_probabilities(rank_judge):
    result = rank_judge(BATTLES[2])
    assert set(result) == {*PROBS, "label", "reward_a", "reward_b"}
    # Davidson: P(A) / P(B) = exp(r_A - r_B)
    ratio = result["winner_model_a"] / result["winner_model_b"]
    assert math.log(ratio) == pytest.approx(result["reward_a"] - result["reward_b"], abs=1e-4)
    swapped = rank_judge(_swapped(BATTLES[2]))
    assert (swapped["reward_a"], swapped["reward_b"]) == pytest.approx((result["reward_b"], result["reward_a"]),
                                                                      abs=1e-5)
    score = rank_judge.score_responses([BATTLES[2]["prompt"]], [BATTLES[2]["response_a"]])
    assert score[0] == pytest.approx(result["reward_a"], abs=1e-5)
    tta = rank_judge(BATTLES[2], swap_tta=True)
    assert tta["reward_a"] == pytest.approx(result["reward_a"], abs=1e-5)


def test_max_length_option_truncates(judge):
    long = {"prompt": "q", "response_a": "word " * 200, "response_b": "other " * 200}
    assert judge(long, max_length=32) != judge(long)
    assert judge(long, max_length=64) == judge(long)  # the config's max_length


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"prompt": "q", "response_a": "a"}, r"battle 2: response_b: expected a value, got 'nothing \(field missing\)'"),
        ({"prompt": "q", "response_a": ["a", 3], "response_b": ["b", "c"]}, r"battle 2: .*response_a\[1\]"),
        ({"prompt": ["q"], "response_a": ["a", "b"], "response_b": ["b"]}, r"battle 2: response_a: expected 1 turn\(s\) like prompt"),
        ("not a battle", r"battle 2: \(battle\): expected a dict"),
    ],
)
def test_bad_input_names_the_key_and_the_battle(judge, bad, match):
    battles = [BATTLES[0], BATTLES[2], bad, BATTLES[3]]
    with pytest.raises(ValueError, match=match):
        judge(battles, batch_size=2)
    with pytest.raises(ValueError, match=match.replace("battle 2", "battle 0")):
        judge(bad) if isinstance(bad, dict) else judge([bad])


def test_null_and_empty_turns_are_accepted(judge):
    result = judge({"prompt": ["hi", ""], "response_a": [None, ""], "response_b": ["", None]})
    assert math.isclose(sum(_probs(result)), 1.0, abs_tol=1e-6)


def test_bad_options_are_refused(judge):
    with pytest.raises(ValueError, match="max_length"):
        judge(BATTLES[0], max_length=4)
    with pytest.raises(TypeError, match="unknown option"):
        judge(BATTLES[0], temperature=2)
    with pytest.raises(ValueError, match="batch_size"):
        judge(BATTLES, batch_size=0)


def test_a_model_in_training_mode_is_scored_without_dropout_and_left_training(tiny_model, tiny_tokenizer):
    config = ArenaConfig(encoder_config=tiny_model.config.encoder_config.to_dict(), classifier_dropout=0.5,
                         max_length=64)
    model = ArenaModel(config, encoder=tiny_model.encoder).train()
    judge = ArenaPreferencePipeline(model=model, tokenizer=tiny_tokenizer)
    assert judge(BATTLES[0]) == judge(BATTLES[0]) and model.training


def test_saved_pipeline_loads_as_remote_code_without_the_project(tmp_path, judge):
    repo = tmp_path / "repo"
    judge.save_pretrained(repo)
    files = {p.name for p in repo.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "configuration_arena.py", "modeling_arena.py",
            "encoding_arena.py", "pipeline_arena.py"} <= files
    config = json.loads((repo / "config.json").read_text())
    assert config["custom_pipelines"]["arena-preference"]["impl"] == "pipeline_arena.ArenaPreferencePipeline"
    battles = _battles(6)
    expected = judge(battles, batch_size=3, swap_tta=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = f"""
import json
from transformers import pipeline

battles = json.loads({json.dumps(json.dumps(battles))})
named = pipeline("arena-preference", model={str(repo)!r}, trust_remote_code=True)
unnamed = pipeline(model={str(repo)!r}, trust_remote_code=True)
assert type(unnamed).__name__ == "ArenaPreferencePipeline", type(unnamed)
print(type(named).__module__)
print(json.dumps([named(battles, batch_size=3, swap_tta=True), unnamed(battles, batch_size=3, swap_tta=True)]))
"""
    result = run_without_project(code, elsewhere)
    assert result.returncode == 0, result.stderr[-3000:]
    module, outputs = result.stdout.strip().splitlines()[-2:]
    assert module.startswith("transformers_modules")
    for got in json.loads(outputs):
        _assert_same(got, expected, atol=1e-6)


def test_in_process_pipeline_factory_knows_the_task(tmp_path, judge):
    judge.save_pretrained(tmp_path)
    loaded = pipeline("arena-preference", model=str(tmp_path), trust_remote_code=True)
    assert _probs(loaded(BATTLES[0])) == pytest.approx(_probs(judge(BATTLES[0])), abs=1e-6)


def test_score_responses_needs_the_rank_head(judge):
    with pytest.raises(ValueError, match="head='rank'"):
        judge.score_responses(["q"], ["a"])


def test_score_responses_in_batches_matches_one_at_a_time(rank_judge):
    prompts, responses = [b["prompt"] for b in BATTLES], [b["response_a"] for b in BATTLES]
    batched = rank_judge.score_responses(prompts, responses, batch_size=3)
    single = [rank_judge.score_responses([p], [r])[0] for p, r in zip(prompts, responses)]
    assert batched == pytest.approx(single, abs=1e-5)


def test_training_and_serving_read_a_raw_battle_the_same_way(tmp_path, judge):
    """The same raw Kaggle rows through load_arena (training) and through the pipeline (serving): the same turns and
    the same probabilities. A JSON-list cell with a raw newline inside a string (as CSV writers produce) is two turns
    on both paths."""
    import csv

    from arena_dataset import load_arena
    from encoding_arena import BATTLE_KEYS, normalise_battle

    cells = [
        ('["line one\nline two", "second turn"]', '["a1", "a2"]', '["b1", null]'),
        ('["Hi"]', '["Hello!\tthere"]', '["[citation needed]"]'),
        ('["tab\there", "x"]', '["", "y"]', '["z\n\nw", "q"]'),
    ]
    path = tmp_path / "raw.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "model_a", "model_b", *BATTLE_KEYS, "winner_model_a", "winner_model_b", "winner_tie"])
        for i, row in enumerate(cells):
            writer.writerow([i, "m1", "m2", *row, 1, 0, 0])
    with open(path, newline="", encoding="utf-8") as handle:
        raw = list(csv.DictReader(handle))
    loaded = load_arena(str(path))

    assert [len(turns) for turns in loaded["prompt"]] == [2, 1, 2]
    for raw_row, loaded_row in zip(raw, loaded):
        assert normalise_battle(raw_row) == {key: loaded_row[key] for key in BATTLE_KEYS}
    served = judge(raw, batch_size=2)
    trained = judge([{key: row[key] for key in BATTLE_KEYS} for row in loaded], batch_size=2)
    assert [_probs(r) for r in served] == [_probs(r) for r in trained]


@pytest.mark.parametrize("word, expected", [("no", False), ("false", False), ("0", False), ("yes", True), (1, True)])
def test_on_off_options_read_words_as_they_mean(judge, word, expected):
    battle = BATTLES[2]
    assert judge(battle, swap_tta=word) == judge(battle, swap_tta=expected)
    assert ("logits" in judge(battle, return_logits=word)) is expected


@pytest.mark.parametrize("value", ["maybe", 2, None.__class__, [True]])
def test_on_off_options_refuse_other_values(judge, value):
    for option in ("swap_tta", "return_logits", "style_control"):
        with pytest.raises(ValueError, match=f"{option}=.*expected True or False"):
            judge(BATTLES[0], **{option: value})


def test_style_control_adds_the_content_only_probabilities(judge):
    battle = BATTLES[2]  # a plain answer against a markdown one: the style terms differ
    plain = judge(battle)
    result = judge(battle, style_control=True)
    controlled = result["style_controlled"]
    assert set(controlled) == set(PROBS) and sum(controlled.values()) == pytest.approx(1.0, abs=1e-5)
    assert _probs(plain) == pytest.approx(_probs(result), abs=1e-6) and "style_controlled" not in plain
    assert [controlled[k] for k in PROBS] != pytest.approx(_probs(result), abs=1e-3)
    # symmetric too: exchanging A and B exchanges the style-controlled P(A) and P(B)
    swapped = judge(_swapped(battle), style_control=True)["style_controlled"]
    assert [swapped[k] for k in ("winner_model_b", "winner_model_a", "winner_tie")] == pytest.approx(
        [controlled[k] for k in PROBS], abs=1e-6)
    batched = judge([battle, BATTLES[0]], batch_size=2, style_control=True, swap_tta=True)
    assert [batched[0]["style_controlled"][k] for k in PROBS] == pytest.approx([controlled[k] for k in PROBS],
                                                                              abs=1e-5)
