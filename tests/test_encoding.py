"""encoding_arena: as_turns, truncation properties on random conversations, one encoding for training and the
pipeline, dynamic padding."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import BATTLES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from encoding_arena import ASSISTANT_MARKER, USER_MARKER, ArenaCollator, as_turns, encode_battle, encode_battles

# --- as_turns ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "turns"),
    [
        ("Hi", ["Hi"]),
        ("", [""]),
        ('["Hi", null]', ["Hi", ""]),  # Kaggle JSON-list text with a null turn
        ('["only"]', ["only"]),
        ("[citation needed] is a tag", ["[citation needed] is a tag"]),  # text that merely starts with "["
        ("[1, 2, 3]", ["[1, 2, 3]"]),  # a JSON list, but not of strings: still text
        (["a", None, "c"], ["a", "", "c"]),
        (("a", "b"), ["a", "b"]),
        (None, [""]),  # a null cell is one empty turn, as a null turn is
        ('["line one\nline two", "second turn"]', ["line one\nline two", "second turn"]),  # a raw newline in a cell
    ],
)
def test_as_turns_accepts(value, turns):
    assert as_turns(value, "prompt") == turns


@pytest.mark.parametrize(
    ("value", "message"),
    [([], "prompt: expected a non-empty list of turns"), (["a", 3], r"prompt\[1\]: expected a string or null turn"),
     (7, "prompt: expected a string or a list of turn strings")],
)
def test_as_turns_rejects_with_the_field_name(value, message):
    with pytest.raises(ValueError, match=message):
        as_turns(value, "prompt")


def test_encode_battles_rejects_unequal_turns_and_unknown_strategy(tiny_tokenizer):
    with pytest.raises(ValueError, match=r"battle 0: response_a: expected 2 turn\(s\) like prompt"):
        encode_battles([["a", "b"]], [["x"]], [["x", "y"]], tiny_tokenizer, 64)
    with pytest.raises(ValueError, match="truncation='tail' is not one of"):
        encode_battles(["a"], ["b"], ["c"], tiny_tokenizer, 64, truncation="tail")
    with pytest.raises(ValueError, match="leaves no room"):
        encode_battles(["a"], ["b"], ["c"], tiny_tokenizer, 8)


# --- truncation properties on random conversations ----------------------------------------------------------------

WORDS = ["the", "answer", "is", "Paris", "def", "main():", "return", "42", "**bold**", "-", "list", "\n", "é", "🙂",
         "hash", "table", "poem", "sea", "why?", "Because", "x" * 30, "User:", ""]
turn_text = st.lists(st.sampled_from(WORDS), max_size=60).map(" ".join)
conversation = st.integers(1, 4).flatmap(
    lambda n: st.tuples(*(st.lists(st.one_of(turn_text, st.none()), min_size=n, max_size=n) for _ in range(3)))
)


def _tokens(tokenizer, text: str | None) -> list[int]:
    return tokenizer(text or "", add_special_tokens=False)["input_ids"]


def _check_last_exchange(ids: list[int], prompt: str | None, response: str | None, tokenizer) -> None:
    """The tower ends with `User: <tail of last prompt> Assistant: <head of last response>` [SEP], with at least
    one token of each whenever it has any."""
    user, assistant = _tokens(tokenizer, USER_MARKER), _tokens(tokenizer, ASSISTANT_MARKER)
    p, r = _tokens(tokenizer, prompt), _tokens(tokenizer, response)
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    body = ids[1:-1]
    # the response head: the longest r[:k] that ends the tower right after an Assistant marker
    k = next(k for k in range(len(r), -1, -1)
             if body[len(body) - k:] == r[:k] and body[len(body) - k - len(assistant): len(body) - k] == assistant)
    assert k >= 1 or not r, "the last response lost all its tokens"
    before = body[: len(body) - k - len(assistant)]
    # the prompt tail: the longest p[-j:] ending `before` right after a User marker
    j = next(j for j in range(len(p), -1, -1)
             if before[len(before) - j:] == p[len(p) - j:]
             and before[len(before) - j - len(user): len(before) - j] == user)
    assert j >= 1 or not p, "the last prompt lost all its tokens"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(conversation=conversation, max_length=st.integers(20, 160))
def test_latest_turns_properties(tiny_tokenizer, conversation, max_length):
    prompt, response_a, response_b = conversation
    battle = {"prompt": prompt, "response_a": response_a, "response_b": response_b}
    encoded = encode_battle(battle, tiny_tokenizer, max_length)
    assert encoded == encode_battle(battle, tiny_tokenizer, max_length)  # deterministic
    full = encode_battle(battle, tiny_tokenizer, 10**6)
    for side in ("a", "b"):
        ids = encoded[f"input_ids_{side}"]
        assert len(ids) <= max_length
        _check_last_exchange(ids, prompt[-1], battle[f"response_{side}"][-1], tiny_tokenizer)
        if len(full[f"input_ids_{side}"]) <= max_length:  # a conversation that fits is not touched
            assert ids == full[f"input_ids_{side}"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(conversation=conversation, max_length=st.integers(20, 160))
def test_head_truncation_stays_within_budget_and_is_a_prefix(tiny_tokenizer, conversation, max_length):
    prompt, response_a, response_b = conversation
    battle = {"prompt": prompt, "response_a": response_a, "response_b": response_b}
    encoded = encode_battle(battle, tiny_tokenizer, max_length, truncation="head")
    full = encode_battle(battle, tiny_tokenizer, 10**6, truncation="head")
    for side in ("a", "b"):
        ids, whole = encoded[f"input_ids_{side}"], full[f"input_ids_{side}"]
        assert len(ids) <= max_length
        assert ids[:-1] == whole[: len(ids) - 1]  # the seed's behaviour: the start of the conversation


def test_latest_turns_keeps_the_last_exchange_where_head_loses_it(tiny_tokenizer):
    long_turn = " ".join(["the answer is Paris"] * 40)
    battle = {"prompt": [long_turn, "why?"], "response_a": [long_turn, "Because"], "response_b": [long_turn, "42"]}
    latest = encode_battle(battle, tiny_tokenizer, 64)
    head = encode_battle(battle, tiny_tokenizer, 64, truncation="head")
    because = _tokens(tiny_tokenizer, "Because")
    assert latest["input_ids_a"][-1 - len(because): -1] == because
    assert head["input_ids_a"][-1 - len(because): -1] != because


# --- one encoding for training (tokenize_arena) and the pipeline (encode_battle) ----------------------------------


def test_training_path_encodes_like_the_pipeline(tiny_tokenizer, tmp_path):
    from arena_dataset import load_arena
    from arena_preference.battle_transforms import tokenize_arena

    path = tmp_path / "battles.jsonl"
    winners = ["model_a", "model_b", "tie"]
    with path.open("w") as f:
        for i, b in enumerate(BATTLES):
            f.write(json.dumps({"id": i, **{k: b[k] for k in ("prompt", "response_a", "response_b")},
                                "winner": winners[b["label"]]}) + "\n")
    dataset = tokenize_arena(load_arena(path, cache_dir=str(tmp_path / "cache")), tiny_tokenizer, 48)
    assert dataset["label"] == [b["label"] for b in BATTLES]  # label kept for the collator
    for row, battle in zip(dataset, BATTLES):
        direct = encode_battle(battle, tiny_tokenizer, 48)  # raw battle: strings, lists with None
        assert row["input_ids_a"] == direct["input_ids_a"]
        assert row["input_ids_b"] == direct["input_ids_b"]
        assert row["style_a"] == pytest.approx(direct["style_a"])
        assert row["style_b"] == pytest.approx(direct["style_b"])


# --- ArenaCollator ------------------------------------------------------------------------------------------------


def test_collator_pads_to_the_longest_in_the_batch_not_max_length(tiny_tokenizer):
    enc = encode_battles([b["prompt"] for b in BATTLES], [b["response_a"] for b in BATTLES],
                         [b["response_b"] for b in BATTLES], tiny_tokenizer, 512)
    rows = [{k: enc[k][i] for k in enc} | {"label": b["label"]} for i, b in enumerate(BATTLES)]
    batch = ArenaCollator(tiny_tokenizer.pad_token_id)(rows)
    longest = max(max(len(r["input_ids_a"]), len(r["input_ids_b"])) for r in rows)
    assert longest < 512
    assert batch["input_ids_a"].shape == batch["input_ids_b"].shape == (len(rows), longest)
    for side in ("a", "b"):
        lengths = torch.tensor([len(r[f"input_ids_{side}"]) for r in rows])
        assert torch.equal(batch[f"attention_mask_{side}"].sum(1), lengths)
        for i, r in enumerate(rows):
            assert batch[f"input_ids_{side}"][i, : lengths[i]].tolist() == r[f"input_ids_{side}"]
            assert (batch[f"input_ids_{side}"][i, lengths[i]:] == tiny_tokenizer.pad_token_id).all()
    assert batch["labels"].tolist() == [b["label"] for b in BATTLES]  # read from `label`
    assert batch["style_a"].shape == (len(rows), len(rows[0]["style_a"]))
    padded = ArenaCollator(tiny_tokenizer.pad_token_id, pad_to_multiple_of=8)(rows)
    assert padded["input_ids_a"].shape[1] == -(-longest // 8) * 8


def test_style_features_count_markdown_and_paragraphs():
    from encoding_arena import STYLE_FEATURES, style_features

    text = "# Title\n\nSome **bold** text.\n \n- one\n- two\n\n```\ncode\n```"
    features = dict(zip(STYLE_FEATURES, style_features([text, ""])))
    counts = {name: round(math.expm1(value)) for name, value in features.items() if name.startswith("log_")}
    assert counts["log_chars"] == len(text) + 1  # turns are joined by a newline
    assert counts["log_paragraphs"] == 3  # "\n\n", "\n \n" and "\n\n" again; a single newline is no paragraph
    markdown = ("log_headers", "log_list_items", "log_bold", "log_code_blocks")
    assert [counts[name] for name in markdown] == [1, 2, 1, 1]
    assert features["is_empty"] == 1.0  # a side with an empty turn: an empty answer somewhere
    assert dict(zip(STYLE_FEATURES, style_features([text])))["is_empty"] == 0.0
    assert dict(zip(STYLE_FEATURES, style_features(["", "  "])))["is_empty"] == 1.0


def test_style_features_flag_refusals_and_identical_answers():
    from encoding_arena import STYLE_FEATURES, style_features

    def flags(turns, other=None):
        features = dict(zip(STYLE_FEATURES, style_features(turns, other)))
        return features["is_refusal"], features["is_identical"]

    assert flags(["I\u2019m sorry, but I can't help with that."]) == (1.0, 0.0)
    assert flags(["Sure! Here is how.", "As an AI, I cannot browse."]) == (1.0, 0.0)  # any turn
    assert flags(["Paris.\n" + "x " * 200 + "I'm sorry"]) == (0.0, 0.0)  # only a turn's opening counts
    assert flags(["Paris"], ["Paris"]) == (0.0, 1.0) and flags(["Paris"], ["Paris."]) == (0.0, 0.0)


@pytest.mark.parametrize("text", ["\n" * 40_000, " \n" * 40_000, "- a\n" * 40_000, "  " * 40_000 + "x",
                                  "**a " * 40_000, "#" * 40_000 + "\n" + "1" * 40_000])
def test_style_features_take_linear_time(text):
    import time

    from encoding_arena import style_features

    start = time.perf_counter()
    style_features([text])
    assert time.perf_counter() - start < 1.0  # patterns spanning lines took minutes on the first of these


# --- the token budget bounds the cost ----------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(st.sampled_from(["the", "answer", "über", "😀", "**bold**", "## h", "x" * 120, "1.", "-", "\n",
                                        "\n\n", "  ", "\t", "f(x):", "日本語", "a,b;c"]), min_size=1, max_size=1500),
       joiners=st.lists(st.sampled_from([" ", "", "\n"]), min_size=1, max_size=7), budget=st.integers(4, 120))
def test_tokenize_within_gives_the_whole_texts_tokens_at_the_kept_end(tiny_tokenizer, pieces, joiners, budget):
    """What truncation reads is what tokenizing the whole text gives: all tokens of a text that fits the budget,
    else at least budget + 1 tokens, a prefix (head) or a suffix (tail) of the whole text's tokens."""
    from encoding_arena import tokenize_within

    text = "".join(piece + joiners[i % len(joiners)] for i, piece in enumerate(pieces))
    full = tiny_tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    head, tail = tokenize_within(tiny_tokenizer, [text, text], ["head", "tail"], budget)
    if len(full) <= budget:
        assert head == full == tail
    else:
        assert len(head) > budget and head == full[: len(head)]
        assert len(tail) > budget and tail == full[len(full) - len(tail) :]


COST_PROBE = """
import sys, time
sys.path.insert(0, {root!r})
from arena_preference.model_loading import tiny_deberta_tokenizer
from encoding_arena import encode_battle
tokenizer = tiny_deberta_tokenizer()
encode_battle({{"prompt": "warm up", "response_a": "a", "response_b": "b"}}, tokenizer, 64)
response = {response}
started = time.perf_counter()
encode_battle({{"prompt": "Summarise.", "response_a": response, "response_b": "Fine."}}, tokenizer, 64)
seconds = time.perf_counter() - started
rss = [int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(("VmHWM", "VmRSS"))]
print(seconds, rss[0] - rss[1])
"""


@pytest.mark.parametrize("response, max_seconds, max_extra_mb", [
    ('"word " * 5_000_000', 20, 400),   # 25 MB: was 56 s and 5.5 GB peak, the whole text tokenized before the cut
    ('"\\n" * 40_000', 5, 100),         # was 33 s: a style-feature pattern quadratic in the number of lines
])
def test_one_battle_costs_what_its_token_budget_implies(response, max_seconds, max_extra_mb):
    """Generous bounds (a busy 2-core runner), far below what the unbounded code took; the peak memory is the
    process's high-water mark above its resident size after the battle (the text itself stays resident)."""
    import subprocess
    import sys

    from conftest import ROOT

    out = subprocess.run([sys.executable, "-c", COST_PROBE.format(root=str(ROOT), response=response)],
                         capture_output=True, text=True, timeout=300, check=True).stdout.split()
    seconds, extra_kb = float(out[0]), int(out[1])
    assert seconds < max_seconds and extra_kb / 1024 < max_extra_mb, (seconds, extra_kb)


def test_deeply_nested_text_is_one_turn_not_a_crash():
    """JSON nested past Python's recursion limit is bad JSON: the pipeline's reading keeps it as text."""
    text = "[" * 100_000
    assert as_turns(text, "prompt") == [text]
    with pytest.raises(ValueError, match="prompt: expected a JSON list of turn strings"):
        as_turns(text, "prompt", json_lists=True)
