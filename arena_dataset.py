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

Local files go through `ArenaBuilder` (a `datasets.GeneratorBasedBuilder`, cached like any dataset); Hub ids go
through `datasets.load_dataset` and the same row normalisation. Loading scripts no longer exist in datasets 5,
which is why the builder is used as a module here and `export_arena` writes plain parquet + a README `configs:`.
"""

from __future__ import annotations

import codecs
import csv
import errno
import glob
import hashlib
import json
import logging
import os
import re
import stat
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from datasets.data_files import DataFilesDict, get_data_patterns
from datasets.exceptions import DatasetGenerationError
from datasets.info import DatasetInfosDict
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCard, DatasetCardData

from configuration_arena import LABELS
import encoding_arena
from encoding_arena import BATTLE_KEYS, STYLE_FEATURES, BattleFieldError, as_turns, encode_battles, loads_json, normalise_battle

logger = logging.getLogger(__name__)
_ENCODER_SOURCE_HASH = hashlib.sha256(Path(encoding_arena.__file__).read_bytes()).hexdigest()[:16]

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
# What tokenize_arena adds: int32 ids and float32 style features keep the cached Arrow files small.
TOWER_FEATURES = {
    "input_ids_a": datasets.List(datasets.Value("int32")),
    "input_ids_b": datasets.List(datasets.Value("int32")),
    "style_a": datasets.List(datasets.Value("float32"), length=len(STYLE_FEATURES)),
    "style_b": datasets.List(datasets.Value("float32"), length=len(STYLE_FEATURES)),
}

FILE_EXTENSIONS = (".csv", ".json", ".jsonl", ".parquet")
ONE_HOT = LABELS  # the Kaggle one-hot column names are the label names
WINNERS = {
    "model_a": 0, "model_b": 1, "tie": 2, "tie (bothbad)": 2, "both_bad": 2,
    **{name: i for i, name in enumerate(LABELS)},
}
CONVERSATION_COLUMNS = ("conversation_a", "conversation_b")


class InvalidBattleError(ValueError):
    """A battle (or a whole file) that does not fit the schema; the message names file, row, id and field.

    `reason` is a short category ("unparseable JSON", "turn counts differ", ...) used by skip_invalid's summary.
    """

    def __init__(self, message: str, reason: str = "invalid row"):
        super().__init__(message)
        self.reason = reason


def _shorten(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------------------------------------------
# Reading files: bytes (bounded, regular files only) -> text (UTF-8, or UTF-16/32 with a BOM) -> (column names,
# iterator of (location, record)); the location says where a row is in its file.
# ---------------------------------------------------------------------------------------------------------------

# What a misnamed or binary file starts with; said by name instead of a decoding error.
MAGIC = (
    (b"PAR1", "a parquet file"),
    (b"\x1f\x8b", "gzip-compressed data"),
    (b"PK\x03\x04", "a ZIP archive (an Excel .xlsx?)"),
    (b"\xfd7zXZ\x00", "xz-compressed data"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed data"),
)
# Byte-order marks that name the encoding unambiguously (UTF-32 first: its LE mark starts like UTF-16's).
BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"), (codecs.BOM_UTF8, "utf-8-sig"))
_READ_CHUNK = 1 << 24


class Unparsed(dict):
    """A record the reader could not parse, in place of its dict: `_check_parsed` raises its problem. A subclass
    (not a magic key) so that no key of a user's record can be mistaken for it; the one legacy key it holds lets
    older callers (leaderboard.py) recognise it too."""

    def __init__(self, expected: str, got: Any, reason: str, legacy_key: str = "__json_error__", row_id: Any = "?"):
        super().__init__({legacy_key: got, "id": row_id})
        self.expected, self.got, self.reason = expected, got, reason


class _DuplicateKeys(dict):
    """A JSON object that named some key twice (`json` would keep the last value silently)."""

    duplicates: list[str]


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    record = dict(pairs)
    if len(record) == len(pairs):
        return record
    marked = _DuplicateKeys(record)
    marked.duplicates = sorted(key for key, n in Counter(k for k, _ in pairs).items() if n > 1)
    return marked


def _os_error(path: str, err: OSError) -> Exception:
    if err.errno == errno.ENOENT:
        return FileNotFoundError(f"{path}: no such file")
    what = {errno.ELOOP: "a symbolic link loop", errno.EACCES: "permission denied", errno.EPERM: "permission denied",
            errno.EISDIR: "a folder"}.get(err.errno, err.strerror or type(err).__name__)
    return InvalidBattleError(f"{path}: cannot be read ({what}); expected a readable {'/'.join(FILE_EXTENSIONS)} file",
                              "unreadable file")


def _not_regular(path: str, mode: int) -> InvalidBattleError:
    kind = ("a folder" if stat.S_ISDIR(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
            else "a character device" if stat.S_ISCHR(mode) else "a block device" if stat.S_ISBLK(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
    return InvalidBattleError(f"{path}: is {kind}; expected a regular {'/'.join(FILE_EXTENSIONS)} file",
                              "not a file")


def read_bytes(path: str) -> bytes:
    """The whole file, read once, as one consistent snapshot.

    Only regular files: a FIFO or /dev/zero would block or never end. O_NONBLOCK makes opening a FIFO with no
    writer return at once instead of hanging. Reads stop one byte past the size seen at open, so a file that grows
    (or shrinks, or is rewritten) while it is read is an error, never a mix of two versions or an endless read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as err:
        raise _os_error(path, err) from None
    try:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            raise _not_regular(path, before.st_mode)
        chunks, size = [], 0
        while size <= before.st_size:
            chunk = os.read(fd, min(_READ_CHUNK, before.st_size + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        after = os.fstat(fd)
    except OSError as err:
        raise _os_error(path, err) from None
    finally:
        os.close(fd)
    if size != before.st_size or (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
        raise InvalidBattleError(f"{path}: the file changed while it was read ({before.st_size:,} bytes at open, "
                                 f"{max(size, after.st_size):,} after); load it again once it is complete",
                                 "file changed")
    return b"".join(chunks)


def _sniff(path: str, data: bytes, suffix: str) -> None:
    """A file whose first bytes say it is something else than its name says: named, not decoded as garbage."""
    magics = MAGIC + ((data[:3], "bzip2-compressed data"),) if data[4:10] == b"1AY&SY" else MAGIC
    for magic, what in magics:
        if data.startswith(magic) and not (suffix == ".parquet" and magic == b"PAR1"):
            hint = "rename it to .parquet" if magic == b"PAR1" else "decompress or convert it first"
            raise InvalidBattleError(f"{path}: is {what}, not {suffix[1:].upper()} text; {hint}", "wrong file type")
    if suffix == ".parquet" and not data.startswith(b"PAR1"):
        raise InvalidBattleError(f"{path}: expected a parquet file (it starts with 'PAR1'), got {data[:16]!r}",
                                 "wrong file type")


def _decode(path: str, data: bytes) -> str:
    """UTF-8 text (a UTF-8, UTF-16 or UTF-32 byte-order mark is followed and dropped); any other byte sequence or a
    NUL character is an error naming the file and the line."""
    encoding = next((name for bom, name in BOMS if data.startswith(bom)), "utf-8")
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as err:
        line = data[: err.start].decode(encoding, errors="replace").count("\n") + 1
        expected = "UTF-8 text" if encoding == "utf-8" else f"{encoding.upper()} text (after its byte-order mark)"
        raise InvalidBattleError(
            f"{path}, line {line}: expected {expected}, got byte 0x{data[err.start]:02x} at byte {err.start} (a "
            f"Latin-1 or Windows-1252 file? save it as UTF-8)", "not UTF-8") from None
    nul = text.find("\x00")
    if nul >= 0:  # UTF-16 without a BOM, or binary data: no text format here carries a raw NUL
        raise InvalidBattleError(f"{path}, line {text.count(chr(10), 0, nul) + 1}: expected text, got a NUL "
                                 "character (UTF-16 without a byte-order mark, or a binary file?)", "not text")
    return text


def _csv_records(path: str, text: str) -> tuple[list[str], Iterator[tuple[str, dict]]]:
    # The stdlib reader rather than pandas/pyarrow: it tells the physical line of each record (cells span lines)
    # and reads the 9 MB dev file in about 0.1 s. Real Kaggle cells exceed its default 128 KiB field limit.
    # _physical_lines as open(newline="") would give them: only \n, \r\n and \r end lines, never U+2028 or U+0085.
    csv.field_size_limit(max(csv.field_size_limit(), min(sys.maxsize, 2**31 - 1)))
    reader = csv.reader(_physical_lines(text))
    try:
        header = next(reader, None)
    except csv.Error as err:
        raise InvalidBattleError(f"{path}, line 1: unreadable CSV header ({err})", "unparseable CSV") from None
    if header == ["sep="] or header == ["sep=", ""]:  # Excel's "sep=," line names the comma: skip it
        header = next(reader, None)
    if header is None:
        raise InvalidBattleError(f"{path}: the file is empty; expected a CSV header and rows", "empty file")
    _check_header(path, header, reader.line_num)

    def records() -> Iterator[tuple[str, dict]]:
        start = reader.line_num + 1
        while True:
            try:
                cells = next(reader, None)
            except csv.Error as err:  # e.g. a quote never closed: nothing after it can be placed
                raise InvalidBattleError(f"{path}, line {start}: unreadable CSV from here ({err})",
                                         "unparseable CSV") from None
            if cells is None:
                return
            if cells:  # blank lines carry no battle
                if len(cells) != len(header):
                    # A row that runs over several lines to the end of the file: a quote opened and never closed.
                    unclosed = reader.line_num > start and cells[-1] and text.endswith(cells[-1])
                    hint = " (a quote never closed?)" if unclosed else ""
                    row_id = cells[header.index("id")] if "id" in header[: len(cells)] else "?"
                    yield f"line {start}", Unparsed(f"{len(header)} cells like the header",
                                                     f"{len(cells)} cells{hint}", "unparseable CSV", "__cells__",
                                                     row_id)
                else:
                    yield f"line {start}", dict(zip(header, cells))
            start = reader.line_num + 1

    return header, records()


_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


def _physical_lines(text: str) -> Iterator[str]:
    """The lines of `text` with their ends, one at a time, as `open(newline="")` gives them to the csv module: only
    \\n, \\r\\n and \\r end lines, never U+2028 or U+0085 inside a cell. Not io.StringIO, whose buffer holds 4 bytes
    per character of the whole text."""
    return (match.group() for match in _LINE.finditer(text))


def _check_header(path: str, header: list[str], line: int) -> None:
    """A header read as one column because the file uses another separator, or with a column twice: named."""
    if len(header) == 1:
        separator = next((name for mark, name in ((";", "semicolon"), ("\t", "tab"), ("|", "pipe"))
                          if mark in header[0]), None)
        if separator or header[0].startswith("sep="):
            raise InvalidBattleError(
                f"{path}, line {line}: one column {_shorten(header[0])}; expected comma-separated columns (this "
                f"file looks {separator or 'other'}-separated: save it as CSV with commas)", "wrong separator")
    duplicates = sorted(c for c, n in Counter(header).items() if n > 1)
    if duplicates:
        raise InvalidBattleError(f"{path}, line {line}: duplicate column(s) {_names(duplicates)} in the header; "
                                 "expected each column once (which one holds the data?)", "duplicate column")


def _parse_json(text: str) -> Any:
    # strict=False as in encoding_arena.loads_json (the one JSON rule): a raw tab or control character inside a
    # string is that character. Raw newlines cannot occur in JSON lines: lines are split on them first.
    return json.loads(text, strict=False, object_pairs_hook=_object_without_duplicates)


def _json_records(path: str, text: str) -> tuple[list[str], Iterator[tuple[str, dict]]]:
    if not text.strip():
        raise InvalidBattleError(f"{path}: the file is empty; expected JSON records", "empty file")
    if text.lstrip().startswith("["):  # a JSON array of records: one document, one parse
        try:
            whole = _parse_json(text)
        except json.JSONDecodeError as err:
            raise InvalidBattleError(f"{path}, line {err.lineno}, column {err.colno}: expected a JSON array of "
                                     f"records, got invalid JSON ({err.msg})", "unparseable JSON") from None
        except RecursionError:
            raise InvalidBattleError(f"{path}: JSON nested too deeply to read; expected an array of flat records",
                                     "unparseable JSON") from None
        rows = [(f"record {i + 1}", r) for i, r in enumerate(whole)]
    else:  # JSON lines (also accepted in a .json file, as datasets does), parsed line by line, twice: once for
        # the columns, once for the records, so that no list of records is held
        rows = None

    def parsed() -> Iterator[tuple[str, Any]]:
        return iter(rows) if rows is not None else ((f"line {n}", _json_line(line)) for n, line in _lines(text))

    # The union over all records, in order of first appearance: a key the first record lacks (its label, say)
    # is still a column, and a record without it is named as the odd one out.
    columns = list(dict.fromkeys(key for _, r in parsed() if isinstance(r, dict) and not isinstance(r, Unparsed)
                                 for key in r))
    records = ((loc, r if isinstance(r, dict) else Unparsed("a JSON object", type(r).__name__, "unparseable JSON",
                                                             "__not_object__")) for loc, r in parsed())
    return columns, records


def _lines(text: str) -> Iterator[tuple[int, str]]:
    # split("\n"), not splitlines(): JSON text may hold a raw U+2028 or U+0085 inside a string (json.dumps with
    # ensure_ascii=False and pandas write them), which splitlines() would take for line ends. A "\r" left by CRLF
    # is JSON whitespace; a BOM at a line's start is what `cat a.jsonl b.jsonl` leaves of the second file's mark.
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.lstrip("\ufeff")
        if line.strip():
            yield number, line


def _json_line(line: str) -> Any:
    try:
        return _parse_json(line)
    except json.JSONDecodeError as err:
        return Unparsed("a JSON object", f"{err.msg} (column {err.colno})", "unparseable JSON")
    except RecursionError:
        return Unparsed("a JSON object", "JSON nested too deeply to read", "unparseable JSON")


def _parquet_records(path: str, data: bytes) -> tuple[list[str], Iterator[tuple[str, dict]]]:
    try:
        parquet = pq.ParquetFile(pa.BufferReader(data))
        duplicates = sorted(c for c, n in Counter(parquet.schema_arrow.names).items() if n > 1)
        if duplicates:
            raise InvalidBattleError(f"{path}: duplicate column(s) {_names(duplicates)}; expected each column once",
                                     "duplicate column")
        table = parquet.read()
    except (pa.ArrowException, OSError) as err:
        raise InvalidBattleError(f"{path}: not a readable parquet file ({err})", "unreadable parquet") from None

    def records() -> Iterator[tuple[str, dict]]:
        row = 0
        for batch in table.to_batches(max_chunksize=1000):
            for record in batch.to_pylist():
                row += 1
                yield f"row {row}", record

    return table.column_names, records()


def _records_of(path: str, data: bytes) -> tuple[list[str], Iterator[tuple[str, dict]]]:
    """(columns, records) of a file's bytes, by its suffix; the bytes are checked to be what the suffix says."""
    suffix = Path(path).suffix.lower()
    if suffix not in FILE_EXTENSIONS:
        raise InvalidBattleError(f"{path}: unsupported file type {suffix!r}; expected one of {FILE_EXTENSIONS}",
                                 "unsupported file")
    _sniff(path, data, suffix)
    if suffix == ".parquet":
        return _parquet_records(path, data)
    text = _decode(path, data)
    return (_csv_records if suffix == ".csv" else _json_records)(path, text)


def read_records(path: str) -> tuple[list[str], Iterator[tuple[str, dict]]]:
    """(columns, records) of a file: read once (`read_bytes`), checked, decoded, parsed."""
    return _records_of(path, read_bytes(path))


def _names(columns: Sequence[str], limit: int = 20) -> str:
    """A list of column names for a message, cut after `limit` (a header can hold a million names)."""
    shown = [_shorten(c, 40) for c in list(columns)[:limit]]
    more = f", ... ({len(columns) - limit:,} more)" if len(columns) > limit else ""
    return "[" + ", ".join(shown) + more + "]"


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
        flags = []
        for column in ONE_HOT:
            value = record.get(column)
            flag = {"0": 0, "1": 1, "0.0": 0, "1.0": 1}.get(value.strip()) if isinstance(value, str) else value
            if isinstance(flag, bool) or flag not in (0, 1):
                flag = None
            flags.append(flag)
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
    if isinstance(value, str) and value.strip() in ("0", "1", "2"):
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1, 2):
        return value
    raise BattleFieldError("label", f"0, 1, 2 or one of {list(LABELS)}", value, "invalid label")


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


def _uses_json_lists(records: Iterable[tuple[str, dict]]) -> bool:
    """Kaggle layout (cells are JSON-list text) when any prompt cell parses as a JSON list of turns.

    Per file, so a single corrupted Kaggle cell is an error (not a one-turn string) while a plain prompt that
    merely starts with "[" stays text.
    """
    return any(
        isinstance(p, str) and p.lstrip().startswith("[") and as_turns(p, "prompt") != [p]
        for p in (r.get("prompt") for _, r in records)
    )


class _Validator:
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
        json_lists = layout.text == "columns" and _uses_json_lists(fresh())
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
                error = InvalidBattleError(
                    f"{source}, {location} (id {row_id}), field {problem.field!r}: expected {problem.expected}, "
                    f"got {_shorten(problem.got)}",
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


# ---------------------------------------------------------------------------------------------------------------
# The builder (local files) and load_arena.
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class ArenaBuilderConfig(datasets.BuilderConfig):
    """`data_files` ({split: [paths]}, resolved by datasets), `labeled` (whether the files carry labels: decides
    the features), `skip_invalid`, and `content_sha256`: the sha256 of each file's bytes, comma-separated.

    The content hashes are part of the config, hence of the cache folder's name: datasets keys its cache by path,
    size and mtime, so a file replaced by another of the same size and mtime (`cp -p`, `rsync -t`) would bring back
    the old rows. Hashing the 9 MB dev file takes about 20 ms."""

    labeled: bool = True
    skip_invalid: bool = False
    content_sha256: str = ""


class ArenaBuilder(datasets.GeneratorBasedBuilder):
    """Local arena files (CSV / JSON / JSONL / parquet, any accepted layout) -> typed, cached battles.

    >>> builder = ArenaBuilder(data_files={"train": ["battles.csv"]}, labeled=True)  # doctest: +SKIP
    >>> builder.download_and_prepare(); builder.as_dataset(split="train")            # doctest: +SKIP
    """

    BUILDER_CONFIG_CLASS = ArenaBuilderConfig

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description="Arena battles: prompt and two responses (lists of turns), and which one a person preferred.",
            features=ARENA_FEATURES if self.config.labeled else BATTLE_FEATURES,
        )

    def _split_generators(self, dl_manager: Any) -> list[datasets.SplitGenerator]:
        if not self.config.data_files:
            raise ValueError("ArenaBuilder needs data_files")
        return [
            datasets.SplitGenerator(name=split, gen_kwargs={"files": list(files), "split": split})
            for split, files in self.config.data_files.items()
        ]

    def _generate_examples(self, files: list[str], split: str) -> Iterator[tuple[int, dict]]:
        validator = _Validator(self.config.skip_invalid)
        expected = set(self.config.content_sha256.split(","))
        for path in files:
            data = read_bytes(path)
            if self.config.content_sha256 and _sha256(data) not in expected:
                # Written after load_arena hashed it: these rows would be cached under the old content's key.
                raise InvalidBattleError(f"{path}: the file changed while it was loaded; load it again once it is "
                                         "complete", "file changed")
            columns = _records_of(path, data)[0]
            # Read afresh for each pass over the file (see _Validator.rows): memory stays flat in its rows.
            for row in validator.rows(path, columns, lambda path=path, data=data: _records_of(path, data)[1]):
                yield row["id"], row
        validator.finish(", ".join(files))
        if validator.skipped:
            # Kept in the saved dataset info so that a cached reload reports the skips again (see load_arena).
            self.info.description += f"\n[{split}] {validator.summary()}"


def _local_files(source: str | os.PathLike | Sequence[str | os.PathLike], split: str) -> list[str] | None:
    """The files of `split` for a local source, or None when `source` is not local (a Hub id)."""
    # "~" as a shell would expand it: paths from a YAML config or Python code reach here unexpanded.
    if isinstance(source, (list, tuple)):
        files = [str(Path(f).expanduser().absolute()) for f in source]
    else:
        source = os.path.expanduser(source) if str(source).startswith("~") else source
        mode = _mode(str(source))
        if mode is not None and stat.S_ISDIR(mode):
            path = Path(source)
            try:
                patterns = get_data_patterns(str(path))  # datasets' own split naming (train.csv, data/test-*, ...)
            except datasets.data_files.EmptyDatasetError:
                raise InvalidBattleError(f"{path}: is a folder without data files; expected a file or a folder of "
                                         f"{'/'.join(FILE_EXTENSIONS)} files", "no data files") from None
            if split not in patterns:
                raise ValueError(f"{path}: no files for split {split!r}; found splits {sorted(patterns)}")
            resolved = DataFilesDict.from_patterns({split: patterns[split]}, base_path=str(path))[split]
            files = [f for f in resolved if f.lower().endswith(FILE_EXTENSIONS)]
            if not files:
                raise ValueError(f"{path}: no {FILE_EXTENSIONS} files for split {split!r}")
        elif mode is not None:
            files = [str(Path(source).absolute())]
        elif Path(source).suffix.lower() in FILE_EXTENSIONS or str(source).startswith((".", "/")):
            raise FileNotFoundError(f"{source}: no such file or folder")
        else:
            return None
    for f in files:
        mode = _mode(f)
        if mode is None:
            raise FileNotFoundError(f"{f}: no such file")
        if not stat.S_ISREG(mode):  # a folder in a list, a FIFO, /dev/zero: refused before anything reads it
            raise _not_regular(f, mode)
    return files


def _mode(path: str) -> int | None:
    """The file type bits of `path` (links followed), None when nothing is there; a link loop or a folder that
    cannot be searched is an error naming the path (pathlib's is_file() would just say False)."""
    try:
        return os.stat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError as err:
        if err.errno in (errno.ENOTDIR, errno.ENAMETOOLONG) and not str(path).startswith((".", "/")):
            return None  # not a path at all: maybe a Hub id
        raise _os_error(str(path), err) from None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _inspect(path: str) -> tuple[str, bool]:
    """(sha256 of the file's bytes, whether it carries labels). Labels are decided from the columns of all
    records (for JSON, the union over records), so the features do not hang on the first record."""
    data = read_bytes(path)
    columns, _ = _records_of(path, data)
    return _sha256(data), detect_layout(columns, path).label is not None


def load_arena(
    source: str | os.PathLike | Sequence[str | os.PathLike],
    split: str = "train",
    skip_invalid: bool = False,
    cache_dir: str | None = None,
) -> datasets.Dataset:
    """Load battles from a file, a list of files, a folder or a Hub dataset id into the arena schema.

    Args:
        source: a CSV / JSON / JSONL / parquet file, a list of them, a folder (split files found by datasets'
            naming rules: `train.csv`, `data/validation-00000-of-00001.parquet`, ...) or a Hub dataset id.
        split: the split to return (a single file or a list of files becomes this split).
        skip_invalid: skip rows that do not fit the schema and log how many and why, instead of raising.
        cache_dir: the datasets cache folder (default: datasets' own).

    Returns:
        A `datasets.Dataset` with `ARENA_FEATURES` (or `BATTLE_FEATURES`, without `label`, for unlabeled files).

    Raises:
        InvalidBattleError: a file or row that does not fit (empty file, missing column, unparseable JSON, turn
            counts that disagree, labels not one-hot, non-integer or duplicate id), naming file, line, id, field.
    """
    files = _local_files(source, split)
    if files is None:
        return _load_hub(str(source), split, skip_invalid, cache_dir)
    inspected = [_inspect(f) for f in files]
    labeled = {has_labels for _, has_labels in inspected}
    if len(labeled) > 1:
        raise InvalidBattleError(f"{files}: some files have labels and some do not; load them separately",
                                 "mixed labels")
    builder = ArenaBuilder(
        # glob.escape: datasets reads data_files as glob patterns; "v[1].csv" would be read as v1.csv.
        cache_dir=cache_dir, data_files={split: [glob.escape(f) for f in files]}, labeled=labeled.pop(),
        skip_invalid=skip_invalid,
        content_sha256=",".join(digest for digest, _ in inspected),
    )
    try:
        builder.download_and_prepare()
    except DatasetGenerationError as err:
        if isinstance(err.__cause__, InvalidBattleError):
            raise err.__cause__ from None  # the row's own message, not datasets' generic wrapper
        raise
    dataset = builder.as_dataset(split=split)
    for line in builder.info.description.split("\n")[1:]:  # not splitlines(): see _lines
        if line.startswith(f"[{split}] skipped"):
            logger.warning("%s: %s", ", ".join(files), line[len(f"[{split}] "):])
    return dataset


def _load_hub(repo_id: str, split: str, skip_invalid: bool, cache_dir: str | None) -> datasets.Dataset:
    """A Hub dataset (e.g. lmsys/lmsys-arena-human-preference-55k) through load_dataset, then normalised."""
    raw = datasets.load_dataset(repo_id, split=split, cache_dir=cache_dir)
    source = f"{repo_id} [{split}]"

    def records() -> Iterator[tuple[str, dict]]:
        offset = 0
        for batch in raw.iter(batch_size=1000):
            columns = list(batch)
            for i in range(len(batch[columns[0]])):
                yield f"row {offset + i + 1}", {c: batch[c][i] for c in columns}
            offset += len(batch[columns[0]])

    validator = _Validator(skip_invalid)
    layout = detect_layout(raw.column_names, source)
    rows = list(validator.rows(source, raw.column_names, records()))
    validator.finish(source)
    if validator.skipped:
        logger.warning("%s: %s", source, validator.summary())
    features = ARENA_FEATURES if layout.label is not None else BATTLE_FEATURES
    return datasets.Dataset.from_dict({k: [r[k] for r in rows] for k in features}, features=features, split=split)


# ---------------------------------------------------------------------------------------------------------------
# Transforms: tokenization, A/B swap, split by prompt, export.
# ---------------------------------------------------------------------------------------------------------------


def tokenize_arena(
    dataset: datasets.Dataset,
    tokenizer: Any,
    max_length: int,
    truncation: str = "latest_turns",
    num_proc: int | None = None,
) -> datasets.Dataset:
    """Add tower inputs (`input_ids_a`, `input_ids_b`: token ids, no padding; `style_a`, `style_b`: floats) and
    `length`, the longer tower's token count (what `--train_sampling_strategy group_by_length` groups by).

    A batched, cached `datasets.map` over `encoding_arena.encode_battles` (the one function the pipeline uses
    too). `num_proc` splits the work over processes; a fast tokenizer already batches in Rust, so it pays only
    for large sets on machines with spare cores. All other columns, `label` included, are kept.
    """

    def encode(batch: dict[str, list], encoder_source: str) -> dict[str, list]:
        towers = encode_battles(batch["prompt"], batch["response_a"], batch["response_b"], tokenizer, max_length,
                                truncation)
        return towers | {"length": [max(len(a), len(b)) for a, b in zip(towers["input_ids_a"],
                                                                        towers["input_ids_b"])]}

    features = datasets.Features({**dataset.features, **TOWER_FEATURES, "length": datasets.Value("int32")})
    # datasets fingerprints `encode` by reference to encode_battles, not by its code: the source hash in the
    # fn_kwargs makes a changed encoding_arena.py miss the cache instead of reusing stale tower inputs.
    return dataset.map(encode, batched=True, num_proc=num_proc, features=features,
                       fn_kwargs={"encoder_source": _ENCODER_SOURCE_HASH},
                       desc=f"Encoding battles (max_length={max_length}, {truncation})")


_SWAPPED = {"response_a": "response_b", "model_a": "model_b", "input_ids_a": "input_ids_b", "style_a": "style_b",
            "pooled_a": "pooled_b"}


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


def export_arena(dataset_or_dict: datasets.Dataset | datasets.DatasetDict, folder: str | os.PathLike) -> Path:
    """Write a Hub-ready dataset folder: `data/<split>-00000-of-00001.parquet` and a README.md dataset card whose
    YAML holds `configs:` and the typed features, so `datasets.load_dataset(folder)` (and after
    `huggingface_hub.upload_folder`, `load_dataset("user/name")`) gives the same rows and `ClassLabel`."""
    dataset_dict = (
        dataset_or_dict if isinstance(dataset_or_dict, datasets.DatasetDict)
        else datasets.DatasetDict({str(dataset_or_dict.split or "train"): dataset_or_dict})
    )
    folder = Path(folder)
    (folder / "data").mkdir(parents=True, exist_ok=True)
    for split, dataset in dataset_dict.items():
        dataset.to_parquet(str(folder / "data" / f"{split}-00000-of-00001.parquet"))
    # The same YAML blocks DatasetDict.push_to_hub writes, built with datasets' own helpers.
    card_data = DatasetCardData(task_categories=["text-classification"], tags=["arena", "preference", "rlhf"])
    configs = [{"split": s, "path": f"data/{s}-*"} for s in dataset_dict]
    MetadataConfigs({"default": {"data_files": configs}}).to_dataset_card_data(card_data)
    first = next(iter(dataset_dict.values()))
    info = datasets.DatasetInfo(features=first.features, splits=datasets.SplitDict(
        {s: datasets.SplitInfo(name=s, num_bytes=d.data.nbytes, num_examples=len(d))
         for s, d in dataset_dict.items()}))
    DatasetInfosDict({"default": info}).to_dataset_card_data(card_data)
    counts = ", ".join(f"{s}: {len(d):,}" for s, d in dataset_dict.items())
    card = DatasetCard(
        f"---\n{card_data.to_yaml()}\n---\n\n# Arena battles\n\n"
        f"Pairwise human preference votes between two chatbot answers ({counts} battles), exported by "
        "`arena_dataset.export_arena`.\n\n"
        "Columns: `id`; `model_a`, `model_b`; `prompt`, `response_a`, `response_b` (lists of turns, the same "
        "length); `label` (`winner_model_a`, `winner_model_b`, `winner_tie`) where the battles are labelled.\n\n"
        "```python\nfrom datasets import load_dataset\nbattles = load_dataset(\"path/or/user/name\")\n```\n"
    )
    card.save(folder / "README.md")
    return folder


__all__ = [
    "ARENA_FEATURES", "ArenaBuilder", "ArenaBuilderConfig", "BATTLE_FEATURES", "InvalidBattleError", "Layout",
    "TOWER_FEATURES", "Unparsed", "detect_layout", "export_arena", "load_arena", "prompt_group", "read_bytes",
    "read_records", "split_by_prompt",
    "swap_battles", "tokenize_arena",
]
