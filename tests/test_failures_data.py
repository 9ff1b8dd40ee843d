"""Bad input, fuzzing and long streams for the data path: load_arena, encode_battle and the arena-preference
pipeline. Each bad case gives the documented handling or an error naming file, row (line and id) and field.

Cases already covered in test_arena_dataset.py / test_encoding.py / test_pipeline.py are not repeated here (empty
CSV, CSV header only, a missing column, (1, 1, 0) and ('', '', '') labels, bad JSON in a cell, ragged rows, turn
counts, a duplicate id in one file, text and float ids, a CSV BOM, missing keys and non-dict battles)."""

from __future__ import annotations

import bz2
import codecs
import csv
import gc
import gzip
import json
import logging
import os
import re
import time
import weakref

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import BATTLES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_encoding import _check_last_exchange

import arena_dataset
from arena_preference import battle_files
from arena_dataset import InvalidBattleError, load_arena
from arena_preference.battle_schema import BattleValidator
from arena_preference.battle_transforms import tokenize_arena
from encoding_arena import BATTLE_KEYS, STYLE_FEATURES, as_turns, encode_battle, encode_battles, normalise_battle
from pipeline_arena import SORT_WINDOW_BATCHES, ArenaPreferencePipeline

KAGGLE = ["id", "model_a", "model_b", "prompt", "response_a", "response_b", "winner_model_a", "winner_model_b",
          "winner_tie"]
# Emoji (with a skin-tone modifier and a ZWJ family), right-to-left Arabic and Hebrew, a right-to-left override,
# zero-width space / joiner / non-joiner, a BOM character inside the text, combining accents.
UNICODE = ["Hi 🙂👍🏽 👨‍👩‍👧", "مرحبا بالعالم", "שלום\u200f", "\u202eevil\u202c", "a\u200bb\u200dc\u200c",
           "\ufeffinside", "e\u0301 n\u0303"]
MEGABYTE = 1_000_000
IS_EMPTY = STYLE_FEATURES.index("is_empty")
# The pipeline computes in the model's own precision (fp32 here); a battle's probabilities do not depend on the
# battles batched with it beyond float rounding of padded matmuls (the pipeline tests hold 1e-5 for batch 16 vs 1).
BATCH_TOLERANCE = 1e-5


def kaggle_row(id_, prompt, a, b, one_hot=(1, 0, 0)):
    dump = lambda turns: json.dumps(turns, ensure_ascii=False)  # noqa: E731
    return [id_, "m1", "m2", dump(prompt), dump(a), dump(b), *one_hot]


def write_csv(path, header, rows, encoding="utf-8"):
    with path.open("w", encoding=encoding, newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_jsonl(path, records, bom=False):
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    path.write_text(("\ufeff" if bom else "") + text, encoding="utf-8")
    return path


def plain(id_, winner="tie", **fields):
    return {"id": id_, "prompt": "p", "response_a": "a", "response_b": "b", "winner": winner, **fields}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread; on a busy 2-core runner two threads were 7x slower (measured)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture()
def load(tmp_path):
    return lambda source, **kw: load_arena(source, cache_dir=str(tmp_path / "cache"), **kw)


@pytest.fixture(scope="module")
def judge():
    from arena_preference.model_loading import load_model

    model, tokenizer = load_model("embedded:tiny-deberta", max_length=64)
    return ArenaPreferencePipeline(model=model, tokenizer=tokenizer)


# --- load_arena: files and columns ----------------------------------------------------------------------------------


def test_header_only_and_empty_files_in_every_format(tmp_path, load):
    (tmp_path / "array.json").write_text("[]")
    (tmp_path / "blank.jsonl").write_text("\n  \n")
    columns = {c: pa.array([], pa.string()) for c in ("prompt", "response_a", "response_b")}
    pq.write_table(pa.table({"id": pa.array([], pa.int64()), **columns}), tmp_path / "no_rows.parquet")
    cases = {"array.json": r"array\.json: no columns found", "blank.jsonl": r"blank\.jsonl: the file is empty",
             "no_rows.parquet": r"no_rows\.parquet: has a header but no rows"}
    for name, message in cases.items():
        with pytest.raises(InvalidBattleError, match=message):
            load(tmp_path / name)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (["id", "prompt", "respone_a", "response_b"],
         r"missing column\(s\) \['response_a'\]; expected \['prompt', 'response_a', 'response_b'\].*found \[.*"
         r"'respone_a'"),
        (["id", "Prompt", "response_a", "response_b"], r"missing column\(s\) \['prompt'\]"),  # case matters
        (KAGGLE[:8] + ["winner_tei"], r"missing column\(s\) \['winner_tie'\]; one-hot labels need all of"),
        (["id", "conversation_a", "conversation_b", "winer"], r"missing column 'winner'"),
    ],
)
def test_misspelled_columns_name_the_expected_and_the_found_columns(tmp_path, load, header, message):
    row = ['["x"]'] * len(header)
    row[0] = "1"
    path = write_csv(tmp_path / "misspelled.csv", header, [row])
    with pytest.raises(InvalidBattleError, match=r"misspelled\.csv: " + message):
        load(path)


@pytest.mark.parametrize(
    ("one_hot", "got"),
    [((0, 0, 0), r"\(0, 0, 0\)"), ((0, 1, 1), r"\(0, 1, 1\)"), ((1, 1, 1), r"\(1, 1, 1\)"),
     ((1, 0, None), r"\(1, 0, None\)"), ((True, True, False), r"\(True, True, False\)"),
     ((0.5, 0.5, 0), r"\(0.5, 0.5, 0\)")],
)
def test_one_hot_labels_as_json_numbers_must_have_exactly_one_one(tmp_path, load, one_hot, got):
    good = {"id": 1, "prompt": ["p"], "response_a": ["a"], "response_b": ["b"], **dict(zip(KAGGLE[6:], (0, 0, 1)))}
    bad = {**good, "id": 2, **dict(zip(KAGGLE[6:], one_hot))}
    path = write_jsonl(tmp_path / "labels.jsonl", [good, bad])
    with pytest.raises(InvalidBattleError, match=r"labels\.jsonl, line 2 \(id 2\), field "
                                                 r"'winner_model_a/winner_model_b/winner_tie': expected one-hot 0/1 "
                                                 r"values, exactly one 1, got " + got):
        load(path)


@pytest.mark.parametrize(
    ("id_", "shown"),
    [(True, "True"), ("1e3", "1e3"), ("", ""), (None, "None"), ([1], r"\[1\]"), ("0x1F", "0x1F")],
)
def test_non_integer_ids_are_errors(tmp_path, load, id_, shown):
    path = write_jsonl(tmp_path / "ids.jsonl", [plain(0), plain(id_)])
    with pytest.raises(InvalidBattleError, match=rf"ids\.jsonl, line 2 \(id {shown}\), field 'id': expected an "
                                                 r"integer id"):
        load(path)


def test_integer_ids_in_text_are_read_as_integers(tmp_path, load):
    path = write_csv(tmp_path / "ids.csv", KAGGLE, [kaggle_row(" 07", ["p"], ["a"], ["b"]),
                                                    kaggle_row("-3", ["q"], ["a"], ["b"])])
    assert load(path)["id"] == [7, -3]


def test_a_duplicate_id_across_files_names_both_files(tmp_path, load):
    first = write_jsonl(tmp_path / "part1.jsonl", [plain(1), plain(2)])
    second = write_jsonl(tmp_path / "part2.jsonl", [plain(3), plain(2)])
    with pytest.raises(InvalidBattleError, match=r"part2\.jsonl, line 2 \(id 2\), field 'id': duplicate id; expected "
                                                 r"unique ids \(first at .*part1\.jsonl, line 2\)"):
        load([first, second])


def test_null_and_empty_turns(tmp_path, load):
    """A null turn is an empty turn; a null cell or an empty list in the Kaggle layout is an error; a null or
    empty string in the plain layout is one empty turn."""
    kaggle = write_csv(tmp_path / "nulls.csv", KAGGLE, [
        kaggle_row(1, ["hi", None], [None, ""], ["", None]),
        kaggle_row(2, [""], [""], [""]),
    ])
    ds = load(kaggle)
    assert ds["prompt"] == [["hi", ""], [""]] and ds["response_a"] == [["", ""], [""]]
    for name, cell, got in (("null_cell", "null", "None"), ("empty_list", "[]", r"\[\]")):
        path = write_csv(tmp_path / f"{name}.csv", KAGGLE, [kaggle_row(1, ["p"], ["a"], ["b"]),
                                                           [2, "m1", "m2", '["p"]', cell, '["b"]', 1, 0, 0]])
        with pytest.raises(InvalidBattleError, match=rf"{name}\.csv, line 3 \(id 2\), field 'response_a': expected "
                                                     rf"a .*list.*, got {got}"):
            load(path)
    plain_nulls = load(write_jsonl(tmp_path / "plain.jsonl", [plain(1, response_a=None, prompt="")]))
    assert plain_nulls[0]["prompt"] == [""] and plain_nulls[0]["response_a"] == [""]


def test_bom_in_jsonl_and_utf8_sig_csv_written_by_excel(tmp_path, load):
    jsonl = write_jsonl(tmp_path / "bom.jsonl", [plain(1), plain(2, winner="model_b")], bom=True)
    assert load(jsonl)["id"] == [1, 2]
    # Excel's "CSV UTF-8" adds a BOM; without utf-8-sig the first column would be read as "\ufeffid".
    excel = write_csv(tmp_path / "excel.csv", ["id", "prompt", "response_a", "response_b", "winner"],
                      [[5, "p", "a", "b", "model_a"]], encoding="utf-8-sig")
    assert load(excel)[0]["id"] == 5


def test_emoji_rtl_and_zero_width_text_survives_every_format_unchanged(tmp_path, load):
    turns = UNICODE
    n = len(turns)
    csv_path = write_csv(tmp_path / "unicode.csv", KAGGLE, [kaggle_row(1, turns, turns[::-1], turns)])
    jsonl_path = write_jsonl(tmp_path / "unicode.jsonl", [{"id": 1, "prompt": turns, "response_a": turns[::-1],
                                                           "response_b": turns, "winner": "model_a"}])
    for path in (csv_path, jsonl_path):
        row = load(path)[0]
        assert (row["prompt"], row["response_a"], row["response_b"]) == (turns, turns[::-1], turns)
        assert len(row["prompt"]) == n


def test_a_one_megabyte_response_loads_whole_and_tokenizes_within_max_length(tmp_path, load, tiny_tokenizer):
    huge = ("word " * (MEGABYTE // 5)).strip() + " END"
    path = write_csv(tmp_path / "huge.csv", KAGGLE, [kaggle_row(1, ["Summarise."], [huge], ["Short."]),
                                                     kaggle_row(2, ["q"], ["a"], ["b"], (0, 0, 1))])
    start = time.perf_counter()
    battles = load(path)
    assert battles[0]["response_a"] == [huge] and len(huge) > MEGABYTE - 10
    encoded = tokenize_arena(battles, tiny_tokenizer, 64)
    seconds = time.perf_counter() - start
    assert all(len(ids) <= 64 for side in "ab" for ids in encoded[f"input_ids_{side}"])
    assert seconds < 60, f"a 1 MB response took {seconds:.1f} s"


def test_labels_in_a_test_file_are_read_and_a_training_file_without_them_has_no_label(tmp_path, load):
    """Documented handling: labels are loaded when the columns are there (prediction ignores them); a file without
    them loads without a `label` column (train.py then refuses to train on it, see test_failures_train.py)."""
    labeled = write_csv(tmp_path / "test.csv", KAGGLE, [kaggle_row(1, ["q"], ["a"], ["b"], (0, 1, 0))])
    assert load(labeled, split="test")["label"] == [1]
    unlabeled = write_jsonl(tmp_path / "train.jsonl", [{k: v for k, v in plain(1).items() if k != "winner"}])
    assert "label" not in load(unlabeled).column_names


def test_skip_invalid_keeps_the_good_rows_of_the_whole_matrix(tmp_path, load, caplog):
    good = [kaggle_row(i, [UNICODE[i]], ["a"], ["b"], (0, 0, 1)) for i in range(3)]
    bad = [
        kaggle_row(10, ["p"], ["a"], ["b"], (0, 0, 0)),
        kaggle_row(11, ["p"], ["a"], ["b"], (0, 1, 1)),
        kaggle_row("1.5", ["p"], ["a"], ["b"]),
        kaggle_row(0, ["p"], ["a"], ["b"]),  # duplicate of the first good row
        [12, "m1", "m2", '["p"]', "null", '["b"]', 1, 0, 0],
        [13, "m1", "m2", '["p"]', "[]", '["b"]', 1, 0, 0],
        [14, "m1", "m2", '["p", "q"]', '["a"]', '["b", "c"]', 1, 0, 0],
        [15, "m1", "m2", '["p"', '["a"]', '["b"]', 1, 0, 0],
    ]
    path = write_csv(tmp_path / "mixed.csv", KAGGLE, good[:1] + bad[:4] + good[1:2] + bad[4:] + good[2:])
    with caplog.at_level(logging.WARNING, logger="arena_dataset"):
        kept = load(path, skip_invalid=True)
    assert kept["id"] == [0, 1, 2] and kept["prompt"] == [[t] for t in UNICODE[:3]]
    assert "skipped 8 invalid rows, kept 3" in caplog.text
    for reason in ("label not one-hot: 2", "invalid id: 1", "duplicate id: 1", "invalid turns: 2",
                   "turn counts differ: 1", "unparseable JSON: 1"):
        assert reason in caplog.text


# --- encode_battle -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("battle", "message"),
    [
        ({"prompt": 7, "response_a": "a", "response_b": "b"}, r"^prompt: expected a string or a list"),
        ({"prompt": "p", "response_a": {"text": "a"}, "response_b": "b"}, r"^response_a: expected a string.*'text'"),
        ({"prompt": ["p", ["nested"]], "response_a": ["a", "b"], "response_b": ["b", "c"]},
         r"^prompt\[1\]: expected a string or null turn, got \['nested'\]"),
        ({"prompt": [], "response_a": [], "response_b": []}, r"^prompt: expected a non-empty list of turns"),
        ({"prompt": '["p", null]', "response_a": '["a"]', "response_b": '["b", "c"]'},
         r"^response_a: expected 2 turn\(s\) like prompt, a turn per user turn, got 1"),
    ],
)
def test_encode_battle_errors_name_the_field_and_no_false_battle_index(tiny_tokenizer, battle, message):
    with pytest.raises(ValueError, match=message):
        encode_battle(battle, tiny_tokenizer, 64)
    batch = [BATTLES[0], BATTLES[1], battle]  # in a batch the index of the battle comes first
    with pytest.raises(ValueError, match=r"^battle 2: " + message[1:]):
        encode_battles(*([b[k] for b in batch] for k in ("prompt", "response_a", "response_b")), tiny_tokenizer, 64)


def test_encode_battle_keeps_unicode_and_the_end_of_a_megabyte_answer_out(tiny_tokenizer):
    for text in UNICODE:
        encoded = encode_battle({"prompt": text, "response_a": text, "response_b": ""}, tiny_tokenizer, 32)
        assert len(encoded["input_ids_a"]) <= 32 and encoded["style_b"][IS_EMPTY] == 1.0  # "" is flagged
    huge = "word " * (MEGABYTE // 5)
    battle = {"prompt": ["first", "Summarise."], "response_a": ["ok", huge], "response_b": ["ok", "Fine."]}
    encoded = encode_battle(battle, tiny_tokenizer, 48)
    assert len(encoded["input_ids_a"]) == 48 and len(encoded["input_ids_b"]) <= 48
    _check_last_exchange(encoded["input_ids_a"], "Summarise.", huge[:400], tiny_tokenizer)


# --- the pipeline --------------------------------------------------------------------------------------------------


def test_pipeline_names_the_battle_of_a_long_stream(judge):
    bad_at = SORT_WINDOW_BATCHES + 3  # in the second window (batch_size 1: windows of 16 battles)
    battles = ({"prompt": "p", "response_a": 7 if i == bad_at else "a", "response_b": "b"} for i in range(100))
    with pytest.raises(ValueError, match=rf"^battle {bad_at}: response_a: expected a string"):
        list(judge(battles, batch_size=1))


def test_pipeline_scores_unicode_empty_and_megabyte_battles(judge):
    battles = [{"prompt": t, "response_a": t[::-1], "response_b": ""} for t in UNICODE]
    battles.append({"prompt": "Summarise.", "response_a": "word " * (MEGABYTE // 5), "response_b": "Fine."})
    battles.append({"prompt": [None], "response_a": [""], "response_b": '[null]'})
    results = judge(battles, batch_size=4)
    for result in results:
        probs = [result[k] for k in ("winner_model_a", "winner_model_b", "winner_tie")]
        assert all(0 <= p <= 1 for p in probs) and sum(probs) == pytest.approx(1, abs=1e-5)
    for battle, result in zip(battles[:3] + battles[-1:], results[:3] + results[-1:]):
        # batched or one at a time: the same answer (to BATCH_TOLERANCE: see the long-stream test)
        assert judge(battle) == pytest.approx(result, abs=BATCH_TOLERANCE)


def test_pipeline_refuses_a_model_of_another_type(tmp_path):
    from transformers import BertConfig, BertModel

    from arena_preference.model_loading import tiny_deberta_tokenizer

    tokenizer = tiny_deberta_tokenizer()
    bert = BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1,
                                num_attention_heads=2, intermediate_size=32))
    with pytest.raises(ValueError, match=r"needs an arena-preference model \(ArenaModel\); got BertModel with "
                                         r"config model_type 'bert'"):
        ArenaPreferencePipeline(model=bert, tokenizer=tokenizer)


# --- properties: normalisation, pipeline preprocessing --------------------------------------------------------------

WORDS = ["the", "answer", "is", "Paris", "def", "main():", "**bold**", "-", "\n", "é", "🙂", "مرحبا", "\u200b",
         "\u202e", "User:", "Assistant:", "[", "]", "null", '"', "x" * 40, ""]
text = st.lists(st.sampled_from(WORDS), max_size=40).map(" ".join)
turn = st.one_of(text, st.none())
# A side of a battle as users send it: a string, a list of turns, Kaggle JSON text, or something wrong.
side = st.one_of(
    text,
    st.lists(turn, min_size=1, max_size=4),
    st.lists(turn, min_size=1, max_size=4).map(json.dumps),
    st.sampled_from([None, [], 7, {"content": "x"}, ["a", 3], [["nested"]]]),
)


@settings(max_examples=80, deadline=None)
@given(value=st.one_of(side, st.lists(turn, min_size=1, max_size=4)))
def test_as_turns_gives_strings_or_a_value_error_and_reads_json_lists_back(value):
    try:
        turns = as_turns(value, "response_a")
    except ValueError as err:
        assert str(err).startswith("response_a")  # the documented error names the field
        return
    assert turns and all(isinstance(t, str) for t in turns)
    if isinstance(value, list):
        assert turns == [t or "" for t in value]
        assert as_turns(json.dumps(value), "response_a") == turns  # Kaggle JSON text reads the same


@settings(max_examples=60, deadline=None)
@given(records=st.lists(st.fixed_dictionaries(
    {"prompt": side, "response_a": side, "response_b": side,
     "winner": st.sampled_from(["model_a", "model_b", "tie", "tie (bothbad)", "model_c", None])},
    optional={"id": st.one_of(st.integers(-5, 5), st.text(max_size=3))}), min_size=1, max_size=6))
def test_row_normalisation_keeps_valid_rows_whole_and_counts_every_other(records):
    """The row normaliser load_arena runs for every source (driven directly: a dataset build per example would
    take seconds): each record is either a schema row or an InvalidBattleError with a reason, never dropped."""
    columns = sorted({key for record in records for key in record})
    validator = BattleValidator(skip_invalid=True)
    try:
        rows = list(validator.rows("fuzz.jsonl", columns, [(f"line {i + 1}", r) for i, r in enumerate(records)]))
    except InvalidBattleError as err:  # a file-level problem (no id column is fine; nothing else is missing)
        pytest.fail(f"unexpected file-level error: {err}")
    assert len(rows) + sum(validator.skipped.values()) == len(records)
    for row in rows:
        assert len(row["prompt"]) == len(row["response_a"]) == len(row["response_b"]) >= 1
        assert all(isinstance(t, str) for key in ("prompt", "response_a", "response_b") for t in row[key])
        assert row["label"] in (0, 1, 2) and isinstance(row["id"], int)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prompt=side, response_a=side, response_b=side, max_length=st.integers(20, 96))
def test_pipeline_preprocessing_fits_max_length_keeps_the_last_turns_or_names_the_problem(
        judge, prompt, response_a, response_b, max_length):
    battle = {"prompt": prompt, "response_a": response_a, "response_b": response_b}
    try:
        turns = list(normalise_battle(battle).values())
    except ValueError as expected:
        with pytest.raises(ValueError) as raised:
            judge.preprocess(battle, max_length=max_length)
        assert str(raised.value) == f"battle 0: {expected}"  # the documented error, and nothing else
        return
    inputs = judge.preprocess(battle, max_length=max_length)
    for side_name, responses in (("a", turns[1]), ("b", turns[2])):
        padded = inputs[f"input_ids_{side_name}"][0].tolist()
        ids = padded[: int(inputs[f"attention_mask_{side_name}"].sum())]  # both towers are padded to one length
        assert len(padded) <= max_length and set(padded[len(ids):]) <= {judge.tokenizer.pad_token_id}
        _check_last_exchange(ids, turns[0][-1], responses[-1], judge.tokenizer)
        # the stream path encodes a window at once: the same tower inputs as one battle at a time
        window = judge._encode_window([battle], 0, max_length, judge.model.config.truncation)[0]
        assert window[f"input_ids_{side_name}"] == ids


# --- long streams --------------------------------------------------------------------------------------------------

STREAM_WORDS = "the answer is Paris because a hash table maps keys to buckets so a poem about the sea".split()


def stream_battle(i: int) -> dict:
    def words(step: int, n: int) -> str:
        return " ".join(STREAM_WORDS[(i * step + j) % len(STREAM_WORDS)] for j in range(n))

    return {"prompt": words(3, 2 + i % 5), "response_a": words(5, 1 + i % 17), "response_b": [words(7, 1 + i % 11)]}


def resident_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class Battle(dict):
    """A battle dict that can be weakly referenced, to count how many the pipeline still holds."""

    __slots__ = ("__weakref__",)


def test_five_thousand_battles_stream_in_flat_memory_and_match_chunked_scoring(judge):
    """A generator of 5,000 battles: the pipeline holds at most about one window (batch_size * 16) of them at a
    time (counted with weak references: small battles would hide a leak in RSS noise), RSS after the first 1,000
    results and at the end differ by less than a generous 64 MB, and the probabilities equal those of scoring
    chunks of 1,000 as lists (chunk edges fall mid-window, so batches differ), to BATCH_TOLERANCE."""
    total, batch_size = 5000, 64
    window = batch_size * SORT_WINDOW_BATCHES
    alive: list[weakref.ref] = []

    def battles():
        for i in range(total):
            battle = Battle(stream_battle(i))
            alive.append(weakref.ref(battle))
            yield battle

    probs = torch.empty(total, 3, dtype=torch.float64)
    warm, most_held = None, 0
    for i, result in enumerate(judge(battles(), batch_size=batch_size, max_length=32)):
        probs[i] = torch.tensor([result["winner_model_a"], result["winner_model_b"], result["winner_tie"]])
        if i == 999:
            warm = resident_mb()
        if i % 700 == 350:
            gc.collect()
            most_held = max(most_held, sum(ref() is not None for ref in alive))
    growth = resident_mb() - warm
    assert i == total - 1 and len(alive) == total
    assert 0 < most_held <= window, f"{most_held} battles held at once; a window is {window}"
    assert growth < 64, f"RSS grew by {growth:.0f} MB over 4,000 streamed battles"
    for start in (0, 4000):  # two of the five chunks: the first and the last
        chunk = judge([stream_battle(i) for i in range(start, start + 1000)], batch_size=batch_size, max_length=32)
        expected = torch.tensor([[r["winner_model_a"], r["winner_model_b"], r["winner_tie"]] for r in chunk],
                                dtype=torch.float64)
        torch.testing.assert_close(probs[start : start + 1000], expected, rtol=0, atol=BATCH_TOLERANCE)


# --- valid input is read as valid, invalid input is named (encodings, file kinds, types, caches) ----------
# Every file read goes through one reader (battle_files.read_bytes -> _sniff -> _decode -> the format's parser),
# so each case here checks that shared mechanism; docs/hostile-inputs.md lists them all.

LINE_BREAKS = "\u2028\u2029\u0085\x0b\x0c\x1c\x1d\x1e"  # all that str.splitlines() would split on besides \r, \n
ONE_HOT_COLUMNS = KAGGLE[6:]


def labelled(id_, winner="model_a", **fields):
    return {"id": id_, "prompt": f"q{id_}", "response_a": "a", "response_b": "b", "winner": winner, **fields}


def unlabelled(id_):
    return {k: v for k, v in labelled(id_).items() if k != "winner"}


def test_jsonl_whose_first_record_lacks_labels_is_labelled_and_the_unlabelled_row_is_named(tmp_path, load):
    """Columns are the union over all records: the label is not missed because the first record has none, and a
    record without it among labelled ones is named (the first one), or skipped and counted with skip_invalid."""
    path = write_jsonl(tmp_path / "first.jsonl", [unlabelled(0)] + [labelled(i) for i in range(1, 30)])
    with pytest.raises(InvalidBattleError, match=r"first\.jsonl, line 1 \(id 0\), field 'winner': expected a label "
                                                 r"like the other rows of the file \(some rows have labels, this one "
                                                 r"has none\), got 'nothing \(field missing\)'"):
        load(path)
    kept = load(path, skip_invalid=True)
    assert "label" in kept.column_names and kept["id"] == list(range(1, 30)) and set(kept["label"]) == {0}
    one_hot = [{**unlabelled(i), **dict(zip(ONE_HOT_COLUMNS, (0, 1, 0)))} for i in range(5)]
    one_hot[3] = unlabelled(3)
    path = write_jsonl(tmp_path / "middle.jsonl", one_hot)
    with pytest.raises(InvalidBattleError, match=r"middle\.jsonl, line 4 \(id 3\), field "
                                                 r"'winner_model_a/winner_model_b/winner_tie': expected a label"):
        load(path)


def test_json_array_columns_are_the_union_over_records(tmp_path, load):
    path = tmp_path / "array.json"
    path.write_text(json.dumps([unlabelled(0), labelled(1, "model_b")]))
    with pytest.raises(InvalidBattleError, match=r"array\.json, record 1 \(id 0\), field 'winner'"):
        load(path)


def test_duplicate_columns_are_named_in_csv_and_parquet_and_duplicate_keys_in_json(tmp_path, load):
    header = ["id", "prompt", "response_a", "response_b", "prompt", "winner"]
    path = write_csv(tmp_path / "twice.csv", header, [[1, "first prompt", "a", "b", "second prompt", "tie"]])
    with pytest.raises(InvalidBattleError, match=r"twice\.csv, line 1: duplicate column\(s\) \['prompt'\] in the "
                                                 r"header; expected each column once"):
        load(path)
    table = pa.Table.from_arrays([pa.array([1]), pa.array(["p"]), pa.array(["a"]), pa.array(["b"]), pa.array(["x"]),
                                  pa.array(["y"])], names=["id", "prompt", "response_a", "response_b", "winner",
                                                           "winner"])
    pq.write_table(table, tmp_path / "twice.parquet")
    with pytest.raises(InvalidBattleError, match=r"twice\.parquet: duplicate column\(s\) \['winner'\]"):
        load(tmp_path / "twice.parquet")
    jsonl = tmp_path / "twice.jsonl"
    jsonl.write_text(json.dumps(labelled(1)) + "\n"
                     + '{"id": 2, "prompt": "p", "response_a": "a", "response_b": "b", "winner": "model_a", '
                       '"winner": "model_b"}\n')
    with pytest.raises(InvalidBattleError, match=r"twice\.jsonl, line 2 \(id 2\), field '\(row\)': expected each key "
                                                 r"once in the JSON object, got \"\['winner'\] more than once\""):
        load(jsonl)
    conv = [{"role": "user", "content": "p"}, {"role": "assistant", "content": "a"}]
    message = '{"role": "assistant", "content": "one", "content": "two"}'
    line = json.dumps({"id": 1, "winner": "tie", "conversation_a": conv, "conversation_b": conv})
    nested = tmp_path / "nested.jsonl"
    nested.write_text(line.replace(json.dumps(conv[1]), message, 1) + "\n")
    with pytest.raises(InvalidBattleError, match=r"nested\.jsonl, line 1 \(id 1\), field 'conversation_a\[1\]': "
                                                 r"expected each key once"):
        load(nested)


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv_kaggle", "csv_plain"])
def test_raw_line_separators_inside_strings_are_text_in_every_format(tmp_path, load, fmt):
    """json.dumps(ensure_ascii=False) and pandas write U+2028, U+0085 ... raw inside strings; they are text, not
    line ends (only "\\n" ends a JSON line, only \\r / \\n a CSV line)."""
    turn = f"before{LINE_BREAKS}after"
    record = {"id": 1, "prompt": [turn], "response_a": [turn], "response_b": ["b"], "winner": "model_a"}
    second = {**record, "id": 2, "winner": "tie"}
    path = tmp_path / f"separators.{fmt.split('_')[0]}"
    if fmt == "jsonl":
        write_jsonl(path, [record, second])
    elif fmt == "json":
        path.write_text(json.dumps([record, second], ensure_ascii=False), encoding="utf-8")
    elif fmt == "csv_kaggle":
        write_csv(path, KAGGLE, [kaggle_row(1, [turn], [turn], ["b"]), kaggle_row(2, [turn], [turn], ["b"])])
    else:
        write_csv(path, ["id", "prompt", "response_a", "response_b", "winner"], [[1, turn, turn, "b", "model_a"],
                                                                                 [2, turn, turn, "b", "tie"]])
    # json.dumps escapes the C0 controls; write them raw too, as hand edits and other writers do
    path.write_text(path.read_text(encoding="utf-8").replace("\\u000b", "\x0b").replace("\\f", "\x0c")
                    .replace("\\u001c", "\x1c").replace("\\u001d", "\x1d").replace("\\u001e", "\x1e"),
                    encoding="utf-8")
    assert LINE_BREAKS in path.read_text(encoding="utf-8")  # raw, not escaped
    battles = load(path)
    assert battles["id"] == [1, 2] and battles[0]["prompt"] == [turn] and battles[1]["response_a"] == [turn]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".json"])
def test_a_latin1_byte_names_file_and_line_and_says_utf8(tmp_path, load, suffix):
    path = tmp_path / f"latin1{suffix}"
    if suffix == ".csv":
        write_csv(path, ["id", "prompt", "response_a", "response_b", "winner"],
                  [[1, "p", "a", "b", "tie"], [2, "caf\u00e9", "a", "b", "tie"]], encoding="latin-1")
        line = 3
    elif suffix == ".jsonl":
        write_jsonl(path, [labelled(1), labelled(2, prompt="caf\u00e9")])
        path.write_bytes(path.read_bytes().replace("\u00e9".encode(), b"\xe9"))
        line = 2
    else:
        path.write_bytes(b'[\n{"id": 1, "prompt": "caf\xe9", "response_a": "a", "response_b": "b", "winner": "tie"}]')
        line = 2
    with pytest.raises(InvalidBattleError, match=rf"latin1{re.escape(suffix)}, line {line}: expected UTF-8 text, "
                                                 r"got byte 0xe9 at byte \d+ \(a Latin-1 or Windows-1252 file\? save "
                                                 r"it as UTF-8\)"):
        load(path)


def test_a_file_replaced_by_one_of_the_same_size_and_mtime_is_read_again(tmp_path, load):
    """cp -p / rsync -t keep size and mtime: the cache is keyed by the file's content, not by its stamp."""
    path = write_jsonl(tmp_path / "votes.jsonl", [labelled(1, "model_a"), labelled(2, "model_b")])
    stamp = os.stat(path)
    assert load(path)["label"] == [0, 1]
    write_jsonl(path, [labelled(1, "model_b"), labelled(2, "model_a")])  # same length: labels swapped
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert (os.stat(path).st_size, os.stat(path).st_mtime_ns) == (stamp.st_size, stamp.st_mtime_ns)
    assert load(path)["label"] == [1, 0]
    assert load(path)["label"] == [1, 0]  # and that content is cached in turn


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_utf16_and_utf32_with_a_byte_order_mark_are_read(tmp_path, load, encoding, suffix):
    """Excel's "Unicode text" and PowerShell's default: the BOM names the encoding, so the file is valid input."""
    rows = [labelled(1, prompt="caf\u00e9 \U0001f642"), labelled(2, "tie")]
    path = tmp_path / f"wide{suffix}"
    if suffix == ".csv":
        text = "id,prompt,response_a,response_b,winner\r\n" + "".join(
            f"{r['id']},{r['prompt']},a,b,{r['winner']}\r\n" for r in rows)
    else:
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    bom = {"utf-16-be": "\ufeff"}.get(encoding, "")  # "utf-16"/"utf-32" write their own BOM
    path.write_bytes((bom + text).encode(encoding))
    battles = load(path)
    assert battles["id"] == [1, 2] and battles[0]["prompt"] == ["caf\u00e9 \U0001f642"]


def test_nul_bytes_and_utf16_without_a_byte_order_mark_are_named(tmp_path, load):
    path = tmp_path / "nobom.csv"
    path.write_bytes("id,prompt,response_a,response_b,winner\n1,p,a,b,tie\n".encode("utf-16-le"))
    with pytest.raises(InvalidBattleError, match=r"nobom\.csv, line 1: expected text, got a NUL character \(UTF-16 "
                                                 r"without a byte-order mark, or a binary file\?\)"):
        load(path)
    path = tmp_path / "nul.jsonl"
    path.write_text(json.dumps(labelled(1)) + "\n" + json.dumps(labelled(2)).replace("q2", "q\x002") + "\n")
    with pytest.raises(InvalidBattleError, match=r"nul\.jsonl, line 2: expected text, got a NUL character"):
        load(path)


def test_crlf_bare_cr_and_mixed_line_ends_are_read_and_lines_counted(tmp_path, load):
    header = "id,prompt,response_a,response_b,winner"
    rows = ['1,"two\r\nlines",a,b,tie', "2,p,a,b,model_a", "3,p,a,b,model_c"]
    for name, newline in (("crlf", "\r\n"), ("cr", "\r")):
        path = tmp_path / f"{name}.csv"
        path.write_bytes(newline.join([header, *rows]).encode() + newline.encode())
        with pytest.raises(InvalidBattleError, match=rf"{name}\.csv, line 5 \(id 3\), field 'winner'"):
            load(path)  # the cell's own line break counts: row 3 starts on physical line 5
        path.write_bytes(newline.join([header, *rows[:2]]).encode())
        assert load(path)[0]["prompt"] == ["two\r\nlines"]  # a cell keeps its line break as written
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_bytes(json.dumps(labelled(1)).encode() + b"\r\n" + json.dumps(labelled(2)).encode() + b"\n\r\n"
                      + json.dumps(labelled(3, "model_c")).encode() + b"\r\n")
    with pytest.raises(InvalidBattleError, match=r"mixed\.jsonl, line 4 \(id 3\), field 'winner'"):
        load(mixed)


def test_concatenated_jsonl_files_with_byte_order_marks_load(tmp_path, load):
    """`cat a.jsonl b.jsonl` of two files saved with a BOM leaves a BOM at the start of a line in the middle."""
    path = tmp_path / "cat.jsonl"
    path.write_text("\ufeff" + json.dumps(labelled(1)) + "\n" + "\ufeff" + json.dumps(labelled(2)) + "\n",
                    encoding="utf-8")
    assert load(path)["id"] == [1, 2]


def test_a_file_of_only_a_byte_order_mark_is_empty(tmp_path, load):
    for name in ("bom.csv", "bom.jsonl"):
        (tmp_path / name).write_bytes(codecs.BOM_UTF8)
        with pytest.raises(InvalidBattleError, match=rf"{name.replace('.', '[.]')}: the file is empty"):
            load(tmp_path / name)


def test_a_header_of_a_hundred_thousand_columns_gives_a_short_message_and_extra_columns_are_ignored(tmp_path, load):
    many = [f"c{i}" for i in range(100_000)]
    path = write_csv(tmp_path / "wide.csv", ["id", *many], [[1, *["x"] * len(many)]])
    with pytest.raises(InvalidBattleError, match=r"wide\.csv: missing column\(s\).*\(99,981 more\)\]") as raised:
        load(path)
    assert len(str(raised.value)) < 1000
    path = write_csv(tmp_path / "extra.csv", ["id", "prompt", "response_a", "response_b", "winner", *many],
                     [[1, "p", "a", "b", "tie", *["x"] * len(many)]])
    assert load(path).column_names == ["id", "model_a", "model_b", "prompt", "response_a", "response_b", "label"]


def test_deeply_nested_json_is_an_error_not_a_crash(tmp_path, load):
    deep = "[" * 100_000 + "]" * 100_000
    (tmp_path / "deep.json").write_text(deep)
    with pytest.raises(InvalidBattleError, match=r"deep\.json: JSON nested too deeply to read"):
        load(tmp_path / "deep.json")
    path = tmp_path / "deep.jsonl"
    path.write_text(json.dumps(labelled(1)) + "\n" + '{"id": 2, "prompt": ' + deep + "}\n")
    with pytest.raises(InvalidBattleError, match=r"deep\.jsonl, line 2 \(id \?\), field '\(row\)': expected a JSON "
                                                 r"object, got 'JSON nested too deeply to read'"):
        load(path)
    cell = write_csv(tmp_path / "deep.csv", KAGGLE, [kaggle_row(1, ["p"], ["a"], ["b"]),
                                                    [2, "m1", "m2", deep, '["a"]', '["b"]', 1, 0, 0]])
    with pytest.raises(InvalidBattleError, match=r"deep\.csv, line 3 \(id 2\), field .*nested too deeply"):
        load(cell)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"model_a": 5}, r"field 'model_a': expected a model name \(string\), got 5"),
        ({"winner": 1}, r"field 'winner': expected one of model_a, model_b, tie, tie \(bothbad\), got 1"),
        ({"winner": True}, r"field 'winner': expected one of .*, got True"),
        ({"winner": ""}, r"field 'winner': expected one of .*, got ''"),
        ({"winner": None}, r"field 'winner': expected one of .*, got None"),
        ({"response_b": 3.5}, r"field 'response_b': expected a string or a list of turn strings, got 3.5"),
        ({"prompt": {"text": "p"}}, r"field 'prompt': expected a string or a list"),
        ({"id": 2**63}, r"field 'id': expected an integer id between -9223372036854775808 and 9223372036854775807"),
        ({"id": "99999999999999999999"}, r"field 'id': expected an integer id between"),
        ({"id": "\u00b2"}, r"field 'id': expected an integer id \(drop or rename"),  # "²".isdigit() is True
        ({"id": float("nan")}, r"field 'id': expected an integer id"),
    ],
)
def test_values_of_the_wrong_type_are_named(tmp_path, load, fields, message):
    path = write_jsonl(tmp_path / "types.jsonl", [labelled(0), {**labelled(1), **fields}])
    with pytest.raises(InvalidBattleError, match=r"types\.jsonl, line 2 \(id .*\), " + message):
        load(path)


def test_label_as_text_number_or_name_is_read_and_a_float_or_bool_label_is_named(tmp_path, load):
    rows = [{**unlabelled(i), "label": v} for i, v in enumerate([0, "1", "winner_tie", " 2 "])]
    assert load(write_jsonl(tmp_path / "ok.jsonl", rows))["label"] == [0, 1, 2, 2]
    for value, shown in ((1.5, "1.5"), (True, "True"), (3, "3")):  # 1.0 is read as 1, in every format
        path = write_jsonl(tmp_path / "label.jsonl", [{**unlabelled(0), "label": 0}, {**unlabelled(1), "label": value}])
        with pytest.raises(InvalidBattleError, match=rf"line 2 \(id 1\), field 'label': expected 0, 1, 2 or one of "
                                                     rf".*, got {shown}"):
            load(path)


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf", "NaN", "1e0", "yes"])
def test_nan_inf_and_other_text_in_one_hot_csv_cells_are_named(tmp_path, load, bad):
    path = write_csv(tmp_path / "hot.csv", KAGGLE, [kaggle_row(1, ["p"], ["a"], ["b"]),
                                                   kaggle_row(2, ["p"], ["a"], ["b"], (bad, "0", "0"))])
    with pytest.raises(InvalidBattleError, match=rf"hot\.csv, line 3 \(id 2\), field "
                                                 rf"'winner_model_a/winner_model_b/winner_tie': expected one-hot 0/1 "
                                                 rf"values, exactly one 1, got \('{bad}', '0', '0'\)"):
        load(path)


def test_nan_and_infinity_json_literals_in_one_hot_fields_are_named(tmp_path, load):
    path = tmp_path / "hot.jsonl"
    good = {**unlabelled(1), **dict(zip(ONE_HOT_COLUMNS, (1, 0, 0)))}
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "id": 2}).replace('"winner_model_a": 1',
                                                                                 '"winner_model_a": NaN') + "\n"
                    + json.dumps({**good, "id": 3}).replace('"winner_tie": 0', '"winner_tie": Infinity') + "\n")
    with pytest.raises(InvalidBattleError, match=r"line 2 \(id 2\), field .*got \(nan, 0, 0\)"):
        load(path)
    kept = load(path, skip_invalid=True)
    assert kept["id"] == [1]


def test_parquet_with_wrong_column_types_is_named_by_row_and_field(tmp_path, load):
    base = {"id": pa.array([1, 2]), "prompt": pa.array(["p", "q"]), "response_a": pa.array(["a", "a"]),
            "response_b": pa.array(["b", "b"])}
    hot = {c: pa.array(v, pa.float64()) for c, v in zip(ONE_HOT_COLUMNS, ([1.0, 0.0], [0.0, 1.0], [0.0, 0.0]))}
    pq.write_table(pa.table({**base, **hot}), tmp_path / "floats.parquet")
    assert load(tmp_path / "floats.parquet")["label"] == [0, 1]  # 1.0 / 0.0 are one-hot values
    cases = {
        "int_prompt": ({"prompt": pa.array([1, 2])}, r"row 1 \(id 1\), field 'prompt': expected a string or a list"),
        "int_turns": ({"prompt": pa.array([[8], [7]], pa.list_(pa.int64()))},
                      r"row 1 \(id 1\), field 'prompt\[0\]': expected a string or null turn, got 8"),
        "float_id": ({"id": pa.array([1.0, 2.0])}, r"row 1 \(id 1.0\), field 'id': expected an integer id"),
        "nan_hot": ({"winner_model_b": pa.array([0.0, float("nan")])}, r"row 2 \(id 2\), field 'winner_model_a/"),
    }
    for name, (columns, message) in cases.items():
        pq.write_table(pa.table({**base, **hot, **columns}), tmp_path / f"{name}.parquet")
        with pytest.raises(InvalidBattleError, match=rf"{name}\.parquet, " + message):
            load(tmp_path / f"{name}.parquet")


def test_a_folder_fifo_device_symlink_loop_or_other_non_file_is_refused_at_once(tmp_path, load):
    """Nothing reads from a FIFO (it would block) or /dev/zero (it never ends): only regular files are read."""
    good = write_jsonl(tmp_path / "good.jsonl", [labelled(1)])
    (tmp_path / "folder.csv").mkdir()
    os.mkfifo(tmp_path / "pipe.csv")
    (tmp_path / "loop.csv").symlink_to(tmp_path / "loop.csv")
    cases = [(tmp_path / "folder.csv", r"folder\.csv: is a folder( without data files)?; expected a"),
             (tmp_path / "pipe.csv", r"pipe\.csv: is a FIFO \(named pipe\); expected a regular"),
             ("/dev/zero", r"/dev/zero: is a character device; expected a regular"),
             (tmp_path / "loop.csv", r"loop\.csv: cannot be read \(a symbolic link loop\)")]
    start = time.perf_counter()
    for path, message in cases:
        for source in (path, [good, path]):
            with pytest.raises(InvalidBattleError, match=message):
                load(source)
    assert time.perf_counter() - start < 30
    (tmp_path / "dangling.csv").symlink_to(tmp_path / "gone.csv")
    with pytest.raises(FileNotFoundError, match=r"dangling\.csv: no such file"):
        load([good, tmp_path / "dangling.csv"])


def test_a_link_to_a_good_file_loads(tmp_path, load):
    good = write_jsonl(tmp_path / "good.jsonl", [labelled(1)])
    (tmp_path / "link.jsonl").symlink_to(good)
    assert load(tmp_path / "link.jsonl")["id"] == [1]


def test_a_file_that_cannot_be_read_is_named(tmp_path, load, monkeypatch):
    path = write_jsonl(tmp_path / "secret.jsonl", [labelled(1)])
    path.chmod(0)
    if os.access(path, os.R_OK):  # root reads anything: make open() answer as it does for other users
        real_open = os.open

        def denied(file, *args, **kwargs):
            if str(file) == str(path):
                raise PermissionError(13, "Permission denied", str(file))
            return real_open(file, *args, **kwargs)

        # the reader (battle_files) opens files; datasets may swap a builder module's `os` for a patched copy
        monkeypatch.setattr(battle_files.os, "open", denied)
    with pytest.raises(InvalidBattleError, match=r"secret\.jsonl: cannot be read \(permission denied\)"):
        load(path)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("zipped.csv", gzip.compress(b"id,prompt,response_a,response_b\n1,p,a,b\n"),
         r"zipped\.csv: is gzip-compressed data, not CSV text; decompress or convert it first"),
        ("sheet.csv", b"PK\x03\x04" + b"\x00" * 40, r"sheet\.csv: is a ZIP archive \(an Excel \.xlsx\?\)"),
        ("data.jsonl", b"PAR1" + b"\x00" * 40, r"data\.jsonl: is a parquet file, not JSONL text; rename it to "
                                               r"\.parquet"),
        ("text.parquet", b"id,prompt\n1,p\n", r"text\.parquet: expected a parquet file \(it starts with 'PAR1'\), "
                                              r"got b'id,prompt"),
        ("cut.parquet", None, r"cut\.parquet: not a readable parquet file"),
        ("notes.txt", b"hello", r"notes\.txt: unsupported file type '\.txt'"),
    ],
    ids=["gzip_as_csv", "xlsx_as_csv", "parquet_as_jsonl", "csv_as_parquet", "truncated_parquet", "txt"],
)
def test_a_file_that_is_not_what_its_name_says_is_named(tmp_path, load, name, content, message):
    path = tmp_path / name
    if content is None:  # a parquet file cut short (an interrupted download)
        pq.write_table(pa.table({"id": [1], "prompt": ["p"], "response_a": ["a"], "response_b": ["b"]}), path)
        content = path.read_bytes()[: len(path.read_bytes()) // 2]
    path.write_bytes(content)
    with pytest.raises(InvalidBattleError, match=message):
        load(path)


def test_a_bzip2_header_named_like_a_column_is_still_a_csv(tmp_path, load):
    path = write_csv(tmp_path / "bz.csv", ["BZh", "id", "prompt", "response_a", "response_b", "winner"],
                     [["x", 1, "p", "a", "b", "tie"]])
    assert load(path)["id"] == [1]
    path.write_bytes(bz2.compress(b"id,prompt\n"))
    with pytest.raises(InvalidBattleError, match=r"bz\.csv: is bzip2-compressed data"):
        load(path)


def test_a_file_that_grows_while_it_is_read_is_an_error_not_a_mix(tmp_path, load, monkeypatch):
    path = write_jsonl(tmp_path / "growing.jsonl", [labelled(i) for i in range(50)])
    real_read = os.read

    def read_then_append(fd, n):
        chunk = real_read(fd, n)
        with path.open("a") as handle:  # another process appends while this one reads
            handle.write(json.dumps(labelled(99)) + "\n")
        return chunk

    monkeypatch.setattr(battle_files.os, "read", read_then_append)  # see test_a_file_that_cannot_be_read
    with pytest.raises(InvalidBattleError, match=r"growing\.jsonl: the file changed while it was read"):
        load(path)


def test_a_file_rewritten_between_inspection_and_reading_is_an_error_not_a_stale_cache(tmp_path, load, monkeypatch):
    path = write_jsonl(tmp_path / "moving.jsonl", [labelled(1), labelled(2)])
    real_inspect = arena_dataset._inspect

    def inspect_then_rewrite(file):
        found = real_inspect(file)
        write_jsonl(path, [labelled(1, "tie"), labelled(2)])
        return found

    monkeypatch.setattr(arena_dataset, "_inspect", inspect_then_rewrite)
    with pytest.raises(InvalidBattleError, match=r"moving\.jsonl: the file changed while it was loaded"):
        load(path)
    monkeypatch.undo()
    assert load(path)["label"] == [2, 0]


def test_a_json_array_with_a_syntax_error_names_line_and_column(tmp_path, load):
    path = tmp_path / "broken.json"
    path.write_text("[\n" + json.dumps(labelled(1)) + ",\n" + json.dumps(labelled(2))[:-1] + "\n]")
    with pytest.raises(InvalidBattleError, match=r"broken\.json, line 4, column 1: expected a JSON array of records, "
                                                 r"got invalid JSON \(Expecting ',' delimiter\)"):
        load(path)


def test_a_json_object_instead_of_records_names_its_keys(tmp_path, load):
    path = tmp_path / "wrapped.json"
    path.write_text(json.dumps({"data": [labelled(1)]}))
    with pytest.raises(InvalidBattleError, match=r"wrapped\.json: missing column\(s\).*found \['data'\]"):
        load(path)


def test_record_keys_that_look_like_internal_markers_are_plain_columns(tmp_path, load):
    """The readers mark unparseable rows with a dict subclass, not with magic keys a user's record could hold."""
    path = write_jsonl(tmp_path / "markers.jsonl", [labelled(1, __cells__=[1, 2], __json_error__="x",
                                                            __not_object__="y")])
    assert load(path)["id"] == [1]


def test_an_unclosed_csv_quote_is_named_at_the_line_it_opens(tmp_path, load):
    path = tmp_path / "quote.csv"
    path.write_text('id,prompt,response_a,response_b,winner\n1,p,a,b,tie\n2,"p,a,b,tie\n3,p,a,b,tie\n')
    with pytest.raises(InvalidBattleError, match=r"quote\.csv, line 3 \(id 2\), field '\(row\)': expected 5 cells "
                                                 r"like the header, got '2 cells \(a quote never closed\?\)'"):
        load(path)


def test_a_file_name_with_glob_characters_is_that_file(tmp_path, load):
    """datasets reads data_files as glob patterns: "v[1].csv" would match v1.csv, another file, and load its rows."""
    header = ["id", "prompt", "response_a", "response_b", "winner"]
    write_csv(tmp_path / "v1.csv", header, [[1, "wrong file", "a", "b", "tie"]])
    write_csv(tmp_path / "v[1].csv", header, [[2, "right file", "a", "b", "tie"]])
    write_csv(tmp_path / "a*b?.csv", header, [[3, "stars", "a", "b", "tie"]])
    assert load(tmp_path / "v[1].csv")["id"] == [2]
    assert load([tmp_path / "a*b?.csv", tmp_path / "v[1].csv"])["id"] == [3, 2]


def test_a_lone_surrogate_escape_is_named_not_a_crash_when_arrow_writes(tmp_path, load):
    """'\\ud800' is valid JSON syntax but no character: Arrow cannot store it as UTF-8."""
    path = tmp_path / "surrogate.jsonl"
    path.write_text(json.dumps(labelled(1)) + "\n"
                    + json.dumps(labelled(2, prompt=["p", "q"], response_a=["a", "b"], response_b=["", "half \ud83d"]))
                    + "\n")
    assert "\\ud83d" in path.read_text()  # json.dumps escaped it: the file itself is plain ASCII
    with pytest.raises(InvalidBattleError, match=r"surrogate\.jsonl, line 2 \(id 2\), field 'response_b\[1\]': "
                                                 r"expected text \(a lone surrogate half is not a character\), got "
                                                 r"'\\\\ud83d at character 5'"):
        load(path)
    assert load(path, skip_invalid=True)["id"] == [1]


def test_jsonl_lines_that_are_not_objects_are_named(tmp_path, load):
    path = tmp_path / "values.jsonl"
    path.write_text(json.dumps(labelled(1)) + "\n[1, 2]\n\"text\"\nnull\n")
    with pytest.raises(InvalidBattleError, match=r"values\.jsonl, line 2 \(id \?\), field '\(row\)': expected a JSON "
                                                 r"object, got 'list'"):
        load(path)
    assert load(path, skip_invalid=True)["id"] == [1]


def test_a_conversation_message_with_a_number_for_content_is_named(tmp_path, load):
    conv = [{"role": "user", "content": "p"}, {"role": "assistant", "content": 42}]
    path = write_jsonl(tmp_path / "conv.jsonl", [{"id": 1, "winner": "tie", "conversation_a": conv,
                                                   "conversation_b": conv[:1]}])
    with pytest.raises(InvalidBattleError, match=r"conv\.jsonl, line 1 \(id 1\), field 'conversation_a\[1\]\.content':"
                                                 r" expected a string, got 42"):
        load(path)


def test_excel_sep_line_is_skipped_and_another_separator_is_named(tmp_path, load):
    header = "id,prompt,response_a,response_b,winner"
    excel = tmp_path / "excel.csv"
    excel.write_text("sep=,\r\n" + header + "\r\n1,p,a,b,tie\r\n3,p,a,b,model_c\r\n")
    with pytest.raises(InvalidBattleError, match=r"excel\.csv, line 4 \(id 3\), field 'winner'"):
        load(excel)  # the sep= line is skipped, and line numbers still count it
    for name, separator, word in (("semicolon.csv", ";", "semicolon"), ("tabs.csv", "\t", "tab")):
        path = tmp_path / name
        path.write_text(header.replace(",", separator) + "\n" + "1;p;a;b;tie".replace(";", separator) + "\n")
        with pytest.raises(InvalidBattleError, match=rf"{name.replace('.', '[.]')}, line 1: one column 'id"
                                                     rf"{re.escape(repr(separator)[1:-1])}prompt.*; expected "
                                                     rf"comma-separated columns \(this file looks {word}-separated"):
            load(path)
    (tmp_path / "excel_semicolon.csv").write_text("sep=;\n" + header.replace(",", ";") + "\n")
    with pytest.raises(InvalidBattleError, match=r"excel_semicolon\.csv, line 1: one column 'sep=;'"):
        load(tmp_path / "excel_semicolon.csv")


def test_a_home_relative_path_is_expanded(tmp_path, load, monkeypatch):
    """A path from a YAML config or Python code is not expanded by a shell."""
    monkeypatch.setenv("HOME", str(tmp_path))
    write_jsonl(tmp_path / "home.jsonl", [labelled(1)])
    assert load("~/home.jsonl")["id"] == [1]
    assert load(["~/home.jsonl"])["id"] == [1]


def _load_in_child(path: str, cache: str, queue) -> None:
    try:
        ds = load_arena(path, cache_dir=cache)
        queue.put([list(ds["id"]), list(ds["label"])])
    except BaseException as err:  # noqa: BLE001 - reported to the parent
        queue.put(repr(err))


def test_two_processes_loading_one_file_into_one_cache_get_the_same_rows(tmp_path):
    """Two jobs started together (two ranks, two users of a shared cache): datasets' locks and the content key
    give both the whole file. Forked, so the children start without importing torch again (seconds, not 30)."""
    import multiprocessing

    path = write_jsonl(tmp_path / "shared.jsonl", [labelled(i, ("model_a", "model_b", "tie")[i % 3])
                                                   for i in range(300)])
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    jobs = [context.Process(target=_load_in_child, args=(str(path), str(tmp_path / "cache"), queue))
            for _ in range(2)]
    for job in jobs:
        job.start()
    results = [queue.get(timeout=120) for _ in jobs]
    for job in jobs:
        job.join(timeout=60)
    expected = [list(range(300)), [i % 3 for i in range(300)]]
    assert results == [expected, expected]
    assert [job.exitcode for job in jobs] == [0, 0]
