"""Reading battle files, safely: bytes (bounded, regular files only) -> text (UTF-8, or UTF-16/32 with a BOM) ->
(column names, iterator of (location, record)) for CSV, JSON, JSON Lines and parquet. `InvalidBattleError` is what
every reader and validator raises: it names the file, row, id and field."""

from __future__ import annotations

import codecs
import csv
import errno
import json
import logging
import os
import re
import stat
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


logger = logging.getLogger(__name__)

FILE_EXTENSIONS = (".csv", ".json", ".jsonl", ".parquet")


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


def os_error(path: str, err: OSError) -> Exception:
    if err.errno == errno.ENOENT:
        return FileNotFoundError(f"{path}: no such file")
    what = {errno.ELOOP: "a symbolic link loop", errno.EACCES: "permission denied", errno.EPERM: "permission denied",
            errno.EISDIR: "a folder"}.get(err.errno, err.strerror or type(err).__name__)
    return InvalidBattleError(f"{path}: cannot be read ({what}); expected a readable {'/'.join(FILE_EXTENSIONS)} file",
                              "unreadable file")


def not_regular(path: str, mode: int) -> InvalidBattleError:
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
        raise os_error(path, err) from None
    try:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            raise not_regular(path, before.st_mode)
        chunks, size = [], 0
        while size <= before.st_size:
            chunk = os.read(fd, min(_READ_CHUNK, before.st_size + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        after = os.fstat(fd)
    except OSError as err:
        raise os_error(path, err) from None
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


def records_of(path: str, data: bytes) -> tuple[list[str], Iterator[tuple[str, dict]]]:
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
    return records_of(path, read_bytes(path))


def _names(columns: Sequence[str], limit: int = 20) -> str:
    """A list of column names for a message, cut after `limit` (a header can hold a million names)."""
    shown = [_shorten(c, 40) for c in list(columns)[:limit]]
    more = f", ... ({len(columns) - limit:,} more)" if len(columns) > limit else ""
    return "[" + ", ".join(shown) + more + "]"


