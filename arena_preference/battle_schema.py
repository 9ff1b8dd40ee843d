"""Arena battles in every layout users have -> one typed `datasets` schema, validated row by row.

Schema (`ARENA_FEATURES`):

    id: int64, model_a: string, model_b: string,
    prompt, response_a, response_b: list of turn strings (the same number of turns on all three),
    label: ClassLabel(winner_model_a, winner_model_b, winner_tie)   -- only when the source has labels

Accepted layouts (detected per file from its columns):

- Kaggle `lmsys-chatbot-arena` (CSV, or the same columns on the Hub): `prompt`, `response_a`, `response_b` are
  JSON lists of turns (`null` turns become ""), one-hot `winner_model_a`, `winner_model_b`, `winner_tie`.
- Hub conversation layouts: `conversation_a`, `conversation_b` as lists of {role, content} (or their JSON text),
  `winner` in model_a / model_b / tie / tie (bothbad).
- plain columns: `prompt`, `response_a`, `response_b` as strings (one turn) or lists of turns, labelled by
  `winner`, by the one-hot columns or by `label` (0/1/2 or a label name, as `export_arena` writes it).

This module holds the schema, the layout detection and the row-by-row validation (`BattleValidator`); files are
read by `battle_files`, and `arena_dataset.load_arena` (the one entry) builds the typed dataset.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import datasets
import numpy as np

from configuration_arena import LABELS
from encoding_arena import BATTLE_KEYS, BattleFieldError, as_turns, loads_json, normalise_battle

from arena_preference.battle_files import InvalidBattleError, Unparsed, _DuplicateKeys, _names, _shorten

logger = logging.getLogger(__name__)


TURNS = datasets.List(datasets.Value("string"))
BATTLE_FEATURES = datasets.Features(
    {
        "id": datasets.Value("int64"),
        "model_a": datasets.Value("string"),
        "model_b": datasets.Value("string"),
        "prompt": TURNS,
        "response_a": TURNS,
        "response_b": TURNS,
    }
)
ARENA_FEATURES = datasets.Features({**BATTLE_FEATURES, "label": datasets.ClassLabel(names=list(LABELS))})

ONE_HOT = LABELS  # the Kaggle one-hot column names are the label names
WINNERS = {
    "model_a": 0, "model_b": 1, "tie": 2, "tie (bothbad)": 2, "both_bad": 2,
    **{name: i for i, name in enumerate(LABELS)},
}
CONVERSATION_COLUMNS = ("conversation_a", "conversation_b")


# ---------------------------------------------------------------------------------------------------------------
# One source (a file or a Hub split) -> schema rows.
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    text: str  # "conversation" | "columns"
    label: str | None  # "one_hot" | "winner" | "label" | None (unlabeled)


def detect_layout(columns: Sequence[str], source: str) -> Layout:
    """The layout of a file from its column names; a clear error when no layout fits."""
    have = set(columns)
    if not have:
        raise InvalidBattleError(f"{source}: no columns found; expected battles (see arena_dataset's docstring)",
                                 "empty file")
    if set(CONVERSATION_COLUMNS) <= have:
        text = "conversation"
    elif set(BATTLE_KEYS) <= have:
        text = "columns"
    else:
        missing = sorted(set(BATTLE_KEYS) - have)
        raise InvalidBattleError(
            f"{source}: missing column(s) {missing}; expected {list(BATTLE_KEYS)} (Kaggle or plain layout) or "
            f"{list(CONVERSATION_COLUMNS)} (Hub conversation layout); found {_names(sorted(have))}",
            "missing column",
        )
    one_hot = [c for c in ONE_HOT if c in have]
    if one_hot:
        if len(one_hot) < len(ONE_HOT):
            raise InvalidBattleError(
                f"{source}: missing column(s) {sorted(set(ONE_HOT) - have)}; one-hot labels need all of "
                f"{list(ONE_HOT)}", "missing column")
        label = "one_hot"
    elif "winner" in have:
        label = "winner"
    elif "label" in have:
        label = "label"
    elif text == "conversation":
        raise InvalidBattleError(f"{source}: missing column 'winner'; the conversation layout needs it",
                                 "missing column")
    else:
        label = None
    return Layout(text, label)


def _conversation(record: dict, field: str) -> tuple[list[str], list[str]]:
    """(user turns, assistant turns) of a [{role, content}] conversation; a missing last answer is ""."""
    value = record.get(field)
    if isinstance(value, str):
        try:
            value = loads_json(value)
        except json.JSONDecodeError as err:
            raise BattleFieldError(field, f"a JSON list of {{role, content}} ({err.msg})", value,
                              "unparseable JSON") from None
    if not isinstance(value, list) or not value:
        raise BattleFieldError(field, "a non-empty list of {role, content} messages", value, "invalid conversation")
    prompts: list[str] = []
    responses: list[str] = []
    for i, message in enumerate(value):
        if isinstance(message, dict):
            _check_keys(message, f"{field}[{i}]")
        role = message.get("role") if isinstance(message, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if role == "system":
            continue  # not shown to the voter as a turn
        if content is not None and not isinstance(content, str):
            raise BattleFieldError(f"{field}[{i}].content", "a string", content, "invalid conversation")
        expected = "user" if len(prompts) == len(responses) else "assistant"
        if role != expected:
            raise BattleFieldError(f"{field}[{i}].role", f"{expected!r} (user and assistant turns alternate)", role,
                              "invalid conversation")
        (prompts if role == "user" else responses).append(content or "")
    if not prompts:
        raise BattleFieldError(field, "at least one user turn", value, "invalid conversation")
    responses += [""] * (len(prompts) - len(responses))
    return prompts, responses


def _label(record: dict, layout: Layout) -> int:
    fields = ONE_HOT if layout.label == "one_hot" else (layout.label,)
    if not any(f in record for f in fields):  # a JSON record without the label the file's other records have
        raise BattleFieldError("/".join(fields), "a label like the other rows of the file (some rows have labels, "
                               "this one has none)", "nothing (field missing)", "missing label")
    if layout.label == "one_hot":
        flags = [_one_hot_flag(record.get(column)) for column in ONE_HOT]
        if None in flags or sum(flags) != 1:
            got = tuple(record.get(c) for c in ONE_HOT)
            raise BattleFieldError("/".join(ONE_HOT), "one-hot 0/1 values, exactly one 1", got, "label not one-hot")
        return flags.index(1)
    if layout.label == "winner":
        value = record.get("winner")
        if not isinstance(value, str) or value.strip() not in WINNERS:
            raise BattleFieldError("winner", "one of model_a, model_b, tie, tie (bothbad)", value, "invalid winner")
        return WINNERS[value.strip()]
    value = record.get("label")
    if isinstance(value, str) and value.strip() in WINNERS:
        return WINNERS[value.strip()]
    # The same class index however the file stores it: "1" or "1.0" in CSV, 1 or 1.0 in JSON and parquet (a
    # float column from pandas). A bool is not a class index (True as "winner_model_b" would be a guess).
    if isinstance(value, str) and value.strip() in ("0", "1", "2", "0.0", "1.0", "2.0"):
        return int(float(value))
    if _is_number(value) and value in (0, 1, 2):
        return int(value)
    raise BattleFieldError("label", f"0, 1, 2 or one of {list(LABELS)}", value, "invalid label")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _one_hot_flag(value: object) -> int | None:
    """0 or 1 from a one-hot cell as any format stores it: 0/1, 0.0/1.0 (a parquet float column), False/True (a
    parquet bool column, JSON true/false) or their text in CSV ("1.0", "True" as pandas writes a bool); else None."""
    if isinstance(value, str):
        return {"0": 0, "1": 1, "0.0": 0, "1.0": 1, "false": 0, "true": 1}.get(value.strip().lower())
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if _is_number(value) and value in (0, 1):
        return int(value)
    return None


def _check_parsed(record: dict) -> None:
    """Rows the file readers could not parse arrive as `Unparsed`; they fail before anything else is read."""
    if isinstance(record, Unparsed):
        raise BattleFieldError("(row)", record.expected, record.got, record.reason)
    _check_keys(record, "(row)")


def _check_keys(record: dict, field: str) -> None:
    """A JSON object that names a key twice: which value was meant is unknowable, so it is an error."""
    if isinstance(record, _DuplicateKeys):
        raise BattleFieldError(field, "each key once in the JSON object", f"{_names(record.duplicates)} more than once",
                               "duplicate key")


def _battle(record: dict, layout: Layout, json_lists: bool) -> dict:
    if layout.text == "conversation":
        prompt, response_a = _conversation(record, "conversation_a")
        prompt_b, response_b = _conversation(record, "conversation_b")
        if len(prompt_b) != len(prompt):
            raise BattleFieldError("conversation_b", f"{len(prompt)} user turn(s) like conversation_a", len(prompt_b),
                              "turn counts differ")
    else:
        prompt, response_a, response_b = normalise_battle(record, json_lists).values()
    row = {
        "model_a": _model(record, "model_a"),
        "model_b": _model(record, "model_b"),
        "prompt": prompt,
        "response_a": response_a,
        "response_b": response_b,
    }
    if layout.label is not None:
        row["label"] = _label(record, layout)
    return row


def _check_text(row: dict) -> None:
    """Every string must be storable as UTF-8: JSON's "\\ud800" escape gives a lone surrogate, which Arrow would
    refuse later with an error that names no row."""
    for field in ("model_a", "model_b", *BATTLE_KEYS):
        value = row[field]
        for i, text in enumerate([value] if isinstance(value, str) else value):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as err:
                name = field if isinstance(value, str) else f"{field}[{i}]"
                got = f"\\u{ord(text[err.start]):04x} at character {err.start}"
                raise BattleFieldError(name, "text (a lone surrogate half is not a character)", got,
                                       "invalid text") from None


def _model(record: dict, field: str) -> str:
    value = record.get(field)
    if value is None or value == "":
        return "unknown"  # Kaggle test files and several sources do not name the models
    if not isinstance(value, str):
        raise BattleFieldError(field, "a model name (string)", value, "invalid model name")
    return value


_INTEGER = re.compile(r"[-+]?[0-9]+")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _row_id(record: dict, position: int) -> int:
    if "id" not in record:
        return position  # no id column (e.g. the Hub conversation sets): number rows by position
    value = record["id"]
    number = None
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):  # ASCII digits: "²".isdigit() is True too
        number = int(value)
    elif isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        number = int(value)
    if number is None:
        raise BattleFieldError("id", "an integer id (drop or rename the column to number rows by position)", value,
                               "invalid id")
    if not INT64_MIN <= number <= INT64_MAX:  # the schema's int64; Arrow would fail later, naming no row
        raise BattleFieldError("id", f"an integer id between {INT64_MIN} and {INT64_MAX}", value, "invalid id")
    return number


def _uses_json_lists(records: Iterable[tuple[str, dict]]) -> str | None:
    """Kaggle layout (cells are JSON-list text) when any prompt cell parses as a JSON list of turns: returns the
    location of the first such row (named when another row's cell is plain text), or None for plain columns.

    Per file, so a single corrupted Kaggle cell is an error (not a one-turn string) while a plain prompt that
    merely starts with "[" stays text.
    """
    for location, record in records:
        prompt = record.get("prompt")
        if isinstance(prompt, str) and prompt.lstrip().startswith("[") and as_turns(prompt, "prompt") != [prompt]:
            return location
    return None


class BattleValidator:
    """Normalises the records of one or more sources of a split; raises or counts invalid rows."""

    def __init__(self, skip_invalid: bool):
        self.skip_invalid = skip_invalid
        self.skipped: Counter[str] = Counter()
        self.examples: dict[str, str] = {}
        self.kept = 0
        self.seen: dict[int, tuple[str, str]] = {}  # id -> (source, location) of its first row
        self.position = 0

    def rows(self, source: str, columns: Sequence[str],
             records: Iterable[tuple[str, dict]] | Callable[[], Iterable[tuple[str, dict]]]) -> Iterator[dict]:
        """The valid rows of one source. `records` is best a function that reads them afresh on each call: the
        layout decision (`_uses_json_lists`) reads the file once before the rows are read, and nothing is held
        in memory in between. A plain iterable is read into a list first."""
        if callable(records):
            fresh = records
        else:
            kept = list(records)
            fresh = lambda: iter(kept)  # noqa: E731
        layout = detect_layout(columns, source)
        if next(iter(fresh()), None) is None:
            raise InvalidBattleError(f"{source}: has a header but no rows; expected at least one battle",
                                     "empty file")
        kaggle_row = _uses_json_lists(fresh()) if layout.text == "columns" else None
        json_lists = kaggle_row is not None
        for location, record in fresh():
            self.position += 1
            try:
                _check_parsed(record)
                row_id = _row_id(record, self.position - 1)
                where = f"{source}, {location} (id {row_id})"
                if row_id in self.seen:
                    first_source, first_location = self.seen[row_id]
                    first = first_location if first_source == source else f"{first_source}, {first_location}"
                    raise InvalidBattleError(
                        f"{where}, field 'id': duplicate id; expected unique ids (first at {first})", "duplicate id")
                try:
                    row = {"id": row_id, **_battle(record, layout, json_lists)}
                    _check_text(row)
                except RecursionError:  # json's C scanner on a cell like "[[[[...": a row error, not a crash
                    raise BattleFieldError("(row)", "JSON cells nested a few levels deep", "JSON nested too deeply "
                                           "to read", "unparseable JSON") from None
                self.seen[row_id] = (source, location)
            except BattleFieldError as problem:
                row_id = record.get("id", "?")
                why = ""
                if json_lists and problem.field.split("[")[0] in BATTLE_KEYS and not str(
                        record.get(problem.field.split("[")[0], "")).lstrip().startswith("["):
                    # Plain text in a file read as the Kaggle layout: the row to look at is the one that made it so.
                    why = (f" (the file reads as the Kaggle layout, every cell a JSON list of turns, because the prompt "
                           f"at {kaggle_row} is one: for plain text columns, fix that row; for the Kaggle layout, "
                           "write every cell as a JSON list)")
                error = InvalidBattleError(
                    f"{source}, {location} (id {row_id}), field {problem.field!r}: expected {problem.expected}, "
                    f"got {_shorten(problem.got)}{why}",
                    problem.reason,
                )
                self._invalid(error)
                continue
            except InvalidBattleError as error:
                self._invalid(error)
                continue
            self.kept += 1
            yield row

    def _invalid(self, error: InvalidBattleError) -> None:
        if not self.skip_invalid:
            raise error
        self.skipped[error.reason] += 1
        self.examples.setdefault(error.reason, str(error))

    def summary(self) -> str:
        if not self.skipped:
            return ""
        reasons = ", ".join(f"{reason}: {n}" for reason, n in self.skipped.most_common())
        first = "; ".join(self.examples.values())
        return f"skipped {sum(self.skipped.values())} invalid rows, kept {self.kept} ({reasons}). First: {first}"

    def finish(self, source: str) -> None:
        if self.kept == 0:
            raise InvalidBattleError(f"{source}: no valid rows left. {self.summary()}", "no valid rows")


