"""Arena battles in every layout users have -> one typed `datasets` schema, validated row by row.

The one entry for battles: `load_arena` (local files or a Hub id -> a typed, validated `datasets.Dataset`),
`ArenaBuilder` and `export_arena`. The schema and the accepted layouts (Kaggle, Hub conversations, plain columns)
are described in `arena_preference.battle_schema`; files are read by `arena_preference.battle_files`.

Local files go through `ArenaBuilder` (a `datasets.GeneratorBasedBuilder`, cached like any dataset); Hub ids go
through `datasets.load_dataset` and the same row normalisation. Loading scripts no longer exist in datasets 5,
which is why the builder is used as a module here and `export_arena` writes plain parquet + a README `configs:`.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import logging
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
from datasets.info import DatasetInfosDict
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCard, DatasetCardData
from datasets.data_files import DataFilesDict, get_data_patterns
from datasets.exceptions import DatasetGenerationError


from arena_preference.battle_files import (FILE_EXTENSIONS, InvalidBattleError, Unparsed, not_regular, os_error,
                                           read_bytes, read_records, records_of)
from arena_preference.battle_schema import (ARENA_FEATURES, BATTLE_FEATURES, BattleValidator, Layout,
                                            detect_layout)
from arena_preference.battle_transforms import (TOWER_FEATURES, prompt_group, split_by_prompt, swap_battles,
                                                tokenize_arena)

logger = logging.getLogger(__name__)

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
        validator = BattleValidator(self.config.skip_invalid)
        expected = set(self.config.content_sha256.split(","))
        for path in files:
            data = read_bytes(path)
            if self.config.content_sha256 and _sha256(data) not in expected:
                # Written after load_arena hashed it: these rows would be cached under the old content's key.
                raise InvalidBattleError(f"{path}: the file changed while it was loaded; load it again once it is "
                                         "complete", "file changed")
            columns = records_of(path, data)[0]
            # Read afresh for each pass over the file (see BattleValidator.rows): memory stays flat in its rows.
            for row in validator.rows(path, columns, lambda path=path, data=data: records_of(path, data)[1]):
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
            raise not_regular(f, mode)
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
        raise os_error(str(path), err) from None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _inspect(path: str) -> tuple[str, bool]:
    """(sha256 of the file's bytes, whether it carries labels). Labels are decided from the columns of all
    records (for JSON, the union over records), so the features do not hang on the first record."""
    data = read_bytes(path)
    columns, _ = records_of(path, data)
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
            naming rules: `train.csv`, `data/validation-00000-of-00001.parquet`, ...), a folder written by
            `save_to_disk`, or a Hub dataset id.
        split: the split to return (a single file or a list of files becomes this split).
        skip_invalid: skip rows that do not fit the schema and log how many and why, instead of raising.
        cache_dir: the datasets cache folder (default: datasets' own).

    Returns:
        A `datasets.Dataset` with `ARENA_FEATURES` (or `BATTLE_FEATURES`, without `label`, for unlabeled files).

    Raises:
        InvalidBattleError: a file or row that does not fit (empty file, missing column, unparseable JSON, turn
            counts that disagree, labels not one-hot, non-integer or duplicate id), naming file, line, id, field.
    """
    if _saved_to_disk(source):
        return _load_saved(str(source), split, skip_invalid)
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


def _saved_to_disk(source: Any) -> bool:
    """A folder written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk` (Arrow files and their JSON state,
    which the file readers would take for data: "state.json: no columns found")."""
    if not isinstance(source, (str, os.PathLike)):
        return False
    folder = Path(os.path.expanduser(source))
    return folder.is_dir() and ((folder / "dataset_dict.json").is_file() or
                                ((folder / "state.json").is_file() and (folder / "dataset_info.json").is_file()))


def _load_saved(folder: str, split: str, skip_invalid: bool) -> datasets.Dataset:
    """Battles from a `save_to_disk` folder (a Dataset, or a DatasetDict's `split`), normalised like a Hub split."""
    raw = datasets.load_from_disk(os.path.expanduser(folder))
    if isinstance(raw, datasets.DatasetDict):
        if split not in raw:
            raise ValueError(f"{folder}: no split {split!r} in this saved DatasetDict; found splits {sorted(raw)}")
        raw = raw[split]
    return _normalise_split(raw, f"{folder} [{split}]", split, skip_invalid)


def _load_hub(repo_id: str, split: str, skip_invalid: bool, cache_dir: str | None) -> datasets.Dataset:
    """A Hub dataset (e.g. lmsys/lmsys-arena-human-preference-55k) through load_dataset, then normalised."""
    raw = datasets.load_dataset(repo_id, split=split, cache_dir=cache_dir)
    return _normalise_split(raw, f"{repo_id} [{split}]", split, skip_invalid)


def _normalise_split(raw: datasets.Dataset, source: str, split: str, skip_invalid: bool) -> datasets.Dataset:
    """A `datasets.Dataset` in any accepted layout -> the arena schema, row by row (`BattleValidator`)."""

    def records() -> Iterator[tuple[str, dict]]:
        offset = 0
        for batch in raw.iter(batch_size=1000):
            columns = list(batch)
            for i in range(len(batch[columns[0]])):
                yield f"row {offset + i + 1}", {c: batch[c][i] for c in columns}
            offset += len(batch[columns[0]])

    validator = BattleValidator(skip_invalid)
    layout = detect_layout(raw.column_names, source)
    rows = list(validator.rows(source, raw.column_names, records()))
    validator.finish(source)
    if validator.skipped:
        logger.warning("%s: %s", source, validator.summary())
    features = ARENA_FEATURES if layout.label is not None else BATTLE_FEATURES
    return datasets.Dataset.from_dict({k: [r[k] for r in rows] for k in features}, features=features, split=split)


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
