"""arena_dataset: every accepted layout, the real dev file, validation errors and skip_invalid, export round trip,
the A/B swap, the split by prompt, tokenization."""

from __future__ import annotations

import csv
import json
import logging
import time
from collections import Counter

import datasets
import pytest
from conftest import ROOT, SAMPLE_DATA, SHARED_DATA

import arena_dataset
from arena_dataset import ARENA_FEATURES, BATTLE_FEATURES, InvalidBattleError, load_arena
from arena_preference.battle_transforms import prompt_group, split_by_prompt, swap_battles, tokenize_arena
from arena_dataset import export_arena

KAGGLE_HEADER = ["id", "model_a", "model_b", "prompt", "response_a", "response_b", "winner_model_a",
                 "winner_model_b", "winner_tie"]


def kaggle_row(id_, prompt, a, b, one_hot=(1, 0, 0), models=("m1", "m2")):
    return [id_, *models, json.dumps(prompt), json.dumps(a), json.dumps(b), *one_hot]


def write_csv(path, header, rows, bom=False):
    with path.open("w", encoding="utf-8-sig" if bom else "utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture()
def load(tmp_path):
    """load_arena with a cache folder of the test's own."""
    return lambda source, **kw: load_arena(source, cache_dir=str(tmp_path / "cache"), **kw)


# --- layouts ----------------------------------------------------------------------------------------------------


def test_kaggle_csv_with_null_turns_multiline_cells_and_bom(tmp_path, load):
    path = write_csv(tmp_path / "train.csv", KAGGLE_HEADER, [
        kaggle_row(7, ["Hi", "Write a poem\nabout rain"], ["Hello!", None], ["Hey", "Rain,\nrain"], (0, 1, 0)),
        kaggle_row(8, ["Capital of France?"], ["Paris"], ["Lyon"], (1, 0, 0)),
        kaggle_row(9, ["2+2?"], ["4"], ["4"], (0, 0, 1)),
    ], bom=True)
    ds = load(path)
    assert ds.features == ARENA_FEATURES
    assert ds["id"] == [7, 8, 9]
    assert ds[0]["prompt"] == ["Hi", "Write a poem\nabout rain"]
    assert ds[0]["response_a"] == ["Hello!", ""]  # a null turn is an empty turn
    assert ds[0]["response_b"] == ["Hey", "Rain,\nrain"]
    assert ds["label"] == [1, 0, 2]
    assert ds.features["label"].int2str(ds["label"]) == ["winner_model_b", "winner_model_a", "winner_tie"]


def test_kaggle_test_file_without_labels_or_models(load):
    ds = load(ROOT / "examples" / "test.csv")
    assert ds.features == BATTLE_FEATURES and "label" not in ds.column_names
    assert len(ds) == 8 and set(ds["model_a"]) == {"unknown"}
    multi = [r for r in ds if len(r["prompt"]) > 1]
    assert multi and multi[0]["response_b"][-1] == ""  # the null turn of the hand-written file


def test_hub_conversation_layout_jsonl(tmp_path, load):
    def conv(*turns):
        return [{"role": role, "content": text} for pair in turns for role, text in zip(("user", "assistant"), pair)]

    records = [
        {"question_id": "q1", "model_a": "x", "model_b": "y", "winner": "model_a",
         "conversation_a": conv(("Hi", "Hello"), ("Bye", "See you")),
         "conversation_b": conv(("Hi", "Yo"), ("Bye", "Ciao"))},
        {"question_id": "q2", "model_a": "x", "model_b": "y", "winner": "tie (bothbad)",
         "conversation_a": [{"role": "system", "content": "Be brief."}] + conv(("Why?", "Because")),
         "conversation_b": conv(("Why?", "No idea"))},
        {"question_id": "q3", "model_a": "x", "model_b": "y", "winner": "model_b",
         "conversation_a": conv(("Ping", "Pong")), "conversation_b": [{"role": "user", "content": "Ping"}]},
        {"question_id": "q4", "model_a": "x", "model_b": "y", "winner": "tie",
         "conversation_a": conv(("A", "1")), "conversation_b": conv(("A", "2"))},
    ]
    ds = load(write_jsonl(tmp_path / "conv.jsonl", records))
    assert ds["id"] == [0, 1, 2, 3]  # no id column: rows numbered by position (question_id is not an id)
    assert ds[0]["prompt"] == ["Hi", "Bye"] and ds[0]["response_b"] == ["Yo", "Ciao"]
    assert ds[1]["prompt"] == ["Why?"]  # the system message is not a turn
    assert ds[2]["response_b"] == [""]  # a missing last answer is an empty turn
    assert ds["label"] == [0, 2, 1, 2]


def test_hub_conversation_layout_parquet(tmp_path, load):
    conv = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    table = datasets.Dataset.from_list([
        {"id": 5, "model_a": "x", "model_b": "y", "winner": "model_b", "conversation_a": conv,
         "conversation_b": [conv[0], {"role": "assistant", "content": "Hey"}]},
    ])
    table.to_parquet(str(tmp_path / "conv.parquet"))
    ds = load(tmp_path / "conv.parquet")
    assert ds[0] == {"id": 5, "model_a": "x", "model_b": "y", "prompt": ["Hi"], "response_a": ["Hello"],
                     "response_b": ["Hey"], "label": 1}


def test_plain_single_turn_columns(tmp_path, load):
    path = write_jsonl(tmp_path / "plain.jsonl", [
        {"id": 1, "prompt": "[INST] is not JSON", "response_a": "yes", "response_b": "no", "winner": "model_a"},
        {"id": 2, "prompt": "Sort [3, 1, 2]", "response_a": "[1, 2, 3]", "response_b": "[\"a\"]", "winner": "tie"},
        {"id": 3, "prompt": ["two", "turns"], "response_a": ["a", None], "response_b": ["b", "c"],
         "winner": "model_b"},
    ])
    ds = load(path)
    assert ds["prompt"] == [["[INST] is not JSON"], ["Sort [3, 1, 2]"], ["two", "turns"]]
    assert ds[1]["response_b"] == ['["a"]']  # plain layout: a string is one turn, whatever it looks like
    assert ds["model_a"] == ["unknown"] * 3 and ds["label"] == [0, 2, 1]
    one_hot = write_csv(tmp_path / "plain.csv", ["id", "prompt", "response_a", "response_b", *KAGGLE_HEADER[-3:]],
                        [[1, "What is 2+2?", "4", "5", 1, 0, 0], [2, "Hi", "", "Hello", "0", "1", "0"]])
    ds = load(one_hot)
    assert ds["prompt"] == [["What is 2+2?"], ["Hi"]] and ds["response_a"] == [["4"], [""]]
    assert ds["label"] == [0, 1]


def test_kaggle_columns_from_the_hub_go_through_load_dataset(monkeypatch):
    """A Hub id (here lmsys/lmsys-arena-human-preference-55k's layout) goes through datasets.load_dataset."""
    calls = []
    hub_rows = datasets.Dataset.from_dict({
        "id": [30192, 53567], "model_a": ["gpt-4", "llama"], "model_b": ["claude", "vicuna"],
        "prompt": ['["Hi", "More"]', '["Q"]'], "response_a": ['["Hello", null]', '["A"]'],
        "response_b": ['["Hey", "Sure"]', '["B"]'],
        "winner_model_a": [1, 0], "winner_model_b": [0, 0], "winner_tie": [0, 1],
    })

    def fake_load_dataset(path, split=None, **kwargs):
        calls.append((path, split))
        return hub_rows

    monkeypatch.setattr(arena_dataset.datasets, "load_dataset", fake_load_dataset)
    ds = load_arena("lmsys/lmsys-arena-human-preference-55k")
    assert calls == [("lmsys/lmsys-arena-human-preference-55k", "train")]
    assert ds.features == ARENA_FEATURES
    assert ds[0]["prompt"] == ["Hi", "More"] and ds[0]["response_a"] == ["Hello", ""]
    assert ds["label"] == [0, 2]
    hub_rows = hub_rows.map(lambda r: {"prompt": '["Q"' if r["id"] == 53567 else r["prompt"]})
    with pytest.raises(InvalidBattleError, match=r"lmsys-arena-human-preference-55k \[train\], row 2 \(id 53567\), "
                                                 r"field 'prompt': expected a JSON list"):
        load_arena("lmsys/lmsys-arena-human-preference-55k")


def test_examples_load(load):
    train = load(ROOT / "examples" / "train.jsonl")
    validation = load(ROOT / "examples" / "validation.jsonl", split="validation")
    assert (len(train), len(validation)) == (48, 16)
    assert min(Counter(train["label"]).values()) >= 8  # all three outcomes present
    assert any(len(p) > 1 for p in train["prompt"])
    assert not set(train["id"]) & set(validation["id"])


def test_a_list_of_files_and_a_folder(tmp_path, load):
    write_csv(tmp_path / "train.csv", KAGGLE_HEADER, [kaggle_row(1, ["a"], ["b"], ["c"])])
    write_csv(tmp_path / "test.csv", KAGGLE_HEADER[:6], [kaggle_row(2, ["d"], ["e"], ["f"])[:6]])
    assert load(tmp_path, split="train")["id"] == [1]
    assert "label" not in load(tmp_path, split="test").column_names
    more = write_csv(tmp_path / "more.csv", KAGGLE_HEADER, [kaggle_row(3, ["g"], ["h"], ["i"])])
    assert load([tmp_path / "train.csv", more])["id"] == [1, 3]
    with pytest.raises(InvalidBattleError, match="some files have labels and some do not"):
        load([tmp_path / "train.csv", tmp_path / "test.csv"])
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        load(tmp_path / "nope.csv")


# --- the dev file -------------------------------------------------------------------------------------------------


# The synthetic sample on every clone (tests/data/make_arena_sample.py); the real dev file too where ../shared/data
# has it (CI; it is never copied into the repo). Rows, label fractions A / B / tie, multi-turn rows.
DEV_FILES = [pytest.param(SAMPLE_DATA, 60, [0.417, 0.383, 0.2], 15, id="sample")]
if (SHARED_DATA / "arena_dev.csv").exists():
    # The data README's 876 multi-turn rows count dev + held-out; the dev file itself has 722 (717 MT-Bench, 5 arena).
    DEV_FILES.append(pytest.param(SHARED_DATA / "arena_dev.csv", 3519, [0.298, 0.488, 0.214], 722, id="shared"))


@pytest.mark.parametrize(("path", "rows", "fractions", "multi_turn"), DEV_FILES)
def test_dev_file_loads_with_its_readme_counts_in_seconds(load, path, rows, fractions, multi_turn):
    start = time.perf_counter()
    ds = load(path)
    seconds = time.perf_counter() - start
    assert len(ds) == rows and len(set(ds["id"])) == rows
    assert [round(n / len(ds), 3) for _, n in sorted(Counter(ds["label"]).items())] == fractions
    assert sum(len(p) > 1 for p in ds["prompt"]) == multi_turn
    assert all(len(p) == len(a) == len(b) for p, a, b in zip(ds["prompt"], ds["response_a"], ds["response_b"]))
    assert seconds < 30, f"loading the dev file took {seconds:.1f} s"


# --- validation -------------------------------------------------------------------------------------------------

GOOD = kaggle_row(1, ["hi"], ["a"], ["b"])


@pytest.mark.parametrize(
    ("name", "rows", "header", "message"),
    [
        ("empty", None, None, r"empty\.csv: the file is empty"),
        ("header_only", [], KAGGLE_HEADER, r"header_only\.csv: has a header but no rows"),
        ("missing_column", [GOOD[:5]], KAGGLE_HEADER[:5], r"missing column\(s\) \['response_b'\]"),
        ("missing_one_hot", [GOOD[:8]], KAGGLE_HEADER[:8], r"missing column\(s\) \['winner_tie'\]"),
        ("not_one_hot", [GOOD, kaggle_row(2, ["x"], ["y"], ["z"], (1, 1, 0))], KAGGLE_HEADER,
         r"not_one_hot\.csv, line 3 \(id 2\), field 'winner_model_a/winner_model_b/winner_tie': expected one-hot"),
        ("no_label", [GOOD, kaggle_row(2, ["x"], ["y"], ["z"], ("", "", ""))], KAGGLE_HEADER,
         r"line 3 \(id 2\), field 'winner_model_a/winner_model_b/winner_tie': expected one-hot .*got \('', '', ''\)"),
        ("bad_json", [GOOD, [2] + GOOD[1:4] + ['["a", "unterminated]'] + GOOD[5:]], KAGGLE_HEADER,
         r"bad_json\.csv, line 3 \(id 2\), field 'response_a': expected a JSON list of turn strings"),
        ("not_strings", [GOOD, [2, "m", "n", '["q"]', "[1]", '["b"]', 1, 0, 0]], KAGGLE_HEADER,
         r"line 3 \(id 2\), field 'response_a\[0\]': expected a string or null turn, got 1"),
        ("turns", [kaggle_row(4, ["p1", "p2"], ["a1", "a2"], ["b1"])], KAGGLE_HEADER,
         r"line 2 \(id 4\), field 'response_b': expected 2 turn\(s\) like prompt.*got 1"),
        ("duplicate", [GOOD, GOOD], KAGGLE_HEADER,
         r"line 3 \(id 1\), field 'id': duplicate id; expected unique ids \(first at line 2\)"),
        ("text_id", [["abc"] + GOOD[1:]], KAGGLE_HEADER, r"line 2 \(id abc\), field 'id': expected an integer id"),
        ("ragged", [GOOD, [2] + GOOD[1:7]], KAGGLE_HEADER,
         r"line 3 \(id 2\), field '\(row\)': expected 9 cells like the header, got '7 cells'"),
    ],
)
def test_invalid_csv_names_file_line_id_and_field(tmp_path, load, name, rows, header, message):
    path = tmp_path / f"{name}.csv"
    if header is None:
        path.write_text("")
    else:
        write_csv(path, header, rows)
    with pytest.raises(InvalidBattleError, match=message):
        load(path)


def test_multiline_cells_report_the_line_where_the_row_starts(tmp_path, load):
    path = write_csv(tmp_path / "multi.csv", KAGGLE_HEADER, [
        kaggle_row(1, ["line\nbreaks\nhere"], ["a\nb"], ["c"]),
        kaggle_row(2, ["x"], ["y"], ["z"], (0, 0, 0)),
    ])
    # json.dumps escapes newlines, so write raw newlines into the cells to make the first record span lines
    path.write_text(path.read_text().replace("\\n", "\n"))
    with pytest.raises(InvalidBattleError, match=r"line 6 \(id 2\)"):  # row 1 spans lines 2-5
        load(path)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"id": 1, "prompt": "p", "response_a": "a", "response_b": "b", "winner": "model_c"},
         r"line 2 \(id 1\), field 'winner': expected one of model_a, model_b, tie, tie \(bothbad\), got 'model_c'"),
        ({"id": 1, "prompt": "p", "response_a": "a", "winner": "tie"},
         r"line 2 \(id 1\), field 'response_b': expected a value, got 'nothing \(field missing\)'"),
        ({"id": 1.5, "prompt": "p", "response_a": "a", "response_b": "b", "winner": "tie"},
         r"line 2 \(id 1.5\), field 'id': expected an integer id"),
        ({"id": 1, "conversation_a": [{"role": "assistant", "content": "x"}],
          "conversation_b": [{"role": "user", "content": "x"}], "winner": "tie"},
         r"line 2 \(id 1\), field 'conversation_a\[0\].role': expected 'user'"),
        ({"id": 1, "conversation_a": [{"role": "user", "content": "p"}, {"role": "assistant", "content": "a"}],
          "conversation_b": [{"role": "user", "content": "p"}, {"role": "assistant", "content": "b"},
                             {"role": "user", "content": "more"}], "winner": "tie"},
         r"line 2 \(id 1\), field 'conversation_b': expected 1 user turn\(s\) like conversation_a, got 2"),
    ],
)
def test_invalid_jsonl_rows(tmp_path, load, record, message):
    first = {"id": 0, "prompt": "p", "response_a": "a", "response_b": "b", "winner": "tie"}
    if "conversation_a" in record:
        first = {"id": 0, "conversation_a": [{"role": "user", "content": "p"}],
                 "conversation_b": [{"role": "user", "content": "p"}], "winner": "tie"}
    path = write_jsonl(tmp_path / "bad.jsonl", [first, record])
    with pytest.raises(InvalidBattleError, match=r"bad\.jsonl, " + message):
        load(path)


def test_unparseable_jsonl_line(tmp_path, load):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"id": 1, "prompt": "p", "response_a": "a", "response_b": "b"}\n\n{"id": 2, "prompt": \n')
    with pytest.raises(InvalidBattleError, match=r"broken\.jsonl, line 3 \(id \?\), field '\(row\)': expected a "
                                                 r"JSON object"):
        load(path)


def test_skip_invalid_skips_counts_and_reports_by_reason(tmp_path, load, caplog):
    path = write_csv(tmp_path / "mixed.csv", KAGGLE_HEADER, [
        GOOD,
        kaggle_row(2, ["x"], ["y"], ["z"], (1, 1, 0)),
        [3] + GOOD[1:4] + ['["oops'] + GOOD[5:],
        kaggle_row(4, ["p1", "p2"], ["a1", "a2"], ["b1"]),
        GOOD,
        kaggle_row(6, ["ok"], ["a"], ["b"], (0, 0, 1)),
        kaggle_row(7, ["x"], ["y"], ["z"], (0, 2, 0)),
    ])
    with pytest.raises(InvalidBattleError):
        load(path)
    with caplog.at_level(logging.WARNING, logger="arena_dataset"):
        ds = load(path, skip_invalid=True)
    assert ds["id"] == [1, 6]
    summary = caplog.text
    assert summary.count("skipped 5 invalid rows, kept 2") == 1
    for reason in ("label not one-hot: 2", "unparseable JSON: 1", "turn counts differ: 1", "duplicate id: 1"):
        assert reason in summary
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="arena_dataset"):
        again = load(path, skip_invalid=True)  # from the cache: the skips are reported again
    assert again["id"] == [1, 6] and "skipped 5 invalid rows" in caplog.text


def test_skip_invalid_with_nothing_left_is_an_error(tmp_path, load):
    path = write_csv(tmp_path / "bad.csv", KAGGLE_HEADER, [kaggle_row(1, ["x"], ["y"], ["z"], (1, 1, 0))])
    with pytest.raises(InvalidBattleError, match="no valid rows left"):
        load(path, skip_invalid=True)


def test_an_edited_file_is_read_again_not_served_from_the_cache(tmp_path, load):
    path = write_csv(tmp_path / "a.csv", KAGGLE_HEADER, [kaggle_row(1, ["x"], ["y"], ["z"])])
    assert load(path)["id"] == [1]
    time.sleep(0.01)
    write_csv(path, KAGGLE_HEADER, [kaggle_row(1, ["x"], ["y"], ["z"]), kaggle_row(2, ["x"], ["y"], ["z"])])
    assert load(path)["id"] == [1, 2]


# --- transforms ---------------------------------------------------------------------------------------------------


def test_export_round_trip_through_load_dataset(tmp_path, load):
    train = load(ROOT / "examples" / "train.jsonl")
    validation = load(ROOT / "examples" / "validation.jsonl", split="validation")
    folder = export_arena(datasets.DatasetDict({"train": train, "validation": validation}), tmp_path / "export")
    assert "configs:" in (folder / "README.md").read_text()
    loaded = datasets.load_dataset(str(folder), cache_dir=str(tmp_path / "hf"))
    assert set(loaded) == {"train", "validation"}
    assert loaded["train"].features == ARENA_FEATURES
    assert loaded["train"].to_list() == train.to_list()
    assert loaded["validation"].to_list() == validation.to_list()
    assert load(folder, split="validation").to_list() == validation.to_list()  # and back through load_arena


def test_exported_folder_pushed_to_a_hub_loads_the_same_rows(tmp_path, load):
    """export -> upload_folder -> load_dataset("user/name") and load_arena("user/name"), against the local Hub
    server (tests/hub_server.py); the clients run in a subprocess because huggingface_hub reads HF_ENDPOINT at
    import."""
    import os
    import subprocess
    import sys

    from hub_server import HubServer

    train = load(ROOT / "examples" / "train.jsonl")
    validation = load(ROOT / "examples" / "validation.jsonl", split="validation")
    folder = export_arena(datasets.DatasetDict({"train": train, "validation": validation}), tmp_path / "export")
    code = f"""
import json, sys
sys.path.insert(0, {str(ROOT)!r})
import datasets
from huggingface_hub import HfApi
from arena_dataset import load_arena
api = HfApi()
api.create_repo("user/arena-battles", repo_type="dataset")
api.upload_folder(repo_id="user/arena-battles", folder_path={str(folder)!r}, repo_type="dataset")
pushed = datasets.load_dataset("user/arena-battles", cache_dir={str(tmp_path / "hub_cache")!r})
again = load_arena("user/arena-battles", split="validation", cache_dir={str(tmp_path / "hub_cache")!r})
print(json.dumps({{"train": pushed["train"].to_list(), "validation": pushed["validation"].to_list(),
                  "load_arena": again.to_list(), "features": str(pushed["train"].features)}}))
"""
    with HubServer() as hub:
        env = {**os.environ, **hub.client_env(), "HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0"}
        result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["train"] == train.to_list() and out["validation"] == validation.to_list()
    assert out["load_arena"] == validation.to_list()
    assert out["features"] == str(ARENA_FEATURES)


def test_swap_battles_mirrors_sides_and_labels(tiny_tokenizer, load):
    battles = tokenize_arena(load(ROOT / "examples" / "validation.jsonl"), tiny_tokenizer, 64)
    swapped = swap_battles(battles)
    mirror = {0: 1, 1: 0, 2: 2}
    for row, flip in zip(battles, swapped):
        assert flip["label"] == mirror[row["label"]]
        for a, b in (("response_a", "response_b"), ("model_a", "model_b"), ("input_ids_a", "input_ids_b"),
                     ("style_a", "style_b")):
            assert (flip[a], flip[b]) == (row[b], row[a])
        assert (flip["id"], flip["prompt"]) == (row["id"], row["prompt"])
    assert swap_battles(swapped).to_list() == battles.to_list()
    augmented = datasets.concatenate_datasets([battles, swapped])  # augmentation: labels stay balanced A/B
    counts = Counter(augmented["label"])
    assert counts[0] == counts[1]


def test_tokenize_arena_adds_tower_inputs_and_keeps_label(tiny_tokenizer, load):
    battles = load(ROOT / "examples" / "train.jsonl")
    encoded = tokenize_arena(battles, tiny_tokenizer, 40)
    assert set(encoded.column_names) == set(battles.column_names) | {"input_ids_a", "input_ids_b", "style_a",
                                                                     "style_b", "length"}
    assert encoded["label"] == battles["label"]
    assert encoded["length"] == [max(len(a), len(b)) for a, b in zip(encoded["input_ids_a"], encoded["input_ids_b"])]
    assert max(len(ids) for side in ("a", "b") for ids in encoded[f"input_ids_{side}"]) <= 40


def test_prompt_group_and_split_by_prompt(tmp_path, load):
    assert prompt_group(["  What IS\n 2+2? ", "and more"]) == "what is 2+2?"
    assert prompt_group('["Hi  there"]') == "hi there"
    records = [{"id": i, "prompt": [f"Question {i % 10}", "follow-up"] if i % 3 else f"question  {i % 10}",
                "response_a": ["a", "b"] if i % 3 else "a", "response_b": ["c", "d"] if i % 3 else "c",
                "winner": "tie"} for i in range(60)]
    battles = load(write_jsonl(tmp_path / "groups.jsonl", records))
    split = split_by_prompt(battles, validation_fraction=0.25, seed=3)
    train_keys = {prompt_group(p) for p in split["train"]["prompt"]}
    validation_keys = {prompt_group(p) for p in split["validation"]["prompt"]}
    assert not train_keys & validation_keys  # "Question 1" and "question  1" are one group
    assert len(split["train"]) + len(split["validation"]) == 60
    assert 15 <= len(split["validation"]) <= 24  # groups of 6 rows: at least the fraction, at most a group more
    assert split_by_prompt(battles, 0.25, seed=3)["validation"]["id"] == split["validation"]["id"]
    with pytest.raises(ValueError, match="between 0 and 1"):
        split_by_prompt(battles, 1.5)
