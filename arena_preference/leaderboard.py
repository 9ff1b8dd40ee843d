"""The offline arena: answers of several models (or battles) -> a preference model's leaderboard, with intervals.

    python leaderboard.py --model_name_or_path out/arena-minilm --responses answers.jsonl --output_dir out/board
    python leaderboard.py --model_name_or_path out/arena-minilm --battles battles.csv --output_dir out/board
    torchrun --nproc_per_node 8 leaderboard.py ...        accelerate launch --num_processes 8 leaderboard.py ...

Steps (each a function below, usable on its own):
1. battles: `--responses` (one row per prompt, model and answer) -> every pair of models on each prompt
   (`--max_pairs_per_prompt` samples them, seeded); or `--battles`, any layout `arena_dataset.load_arena` reads,
   with `model_a` / `model_b` and, when the file has them, human labels. Both are read from Arrow files on disk
   in chunks, so memory does not grow with the text of the battles.
2. scoring: the arena-preference pipeline with A/B swap test-time averaging, batched, cached on disk by model
   fingerprint and battle (a rerun with one new model scores only that model's battles). Under torchrun /
   accelerate launch every process scores its share of each chunk and rank 0 gathers.
3. ratings: Bradley-Terry with ties (Davidson: P(A) : P(B) : P(tie) = sqrt(pi_A/pi_B) : sqrt(pi_B/pi_A) : nu, the
   rank head's model) fitted by maximum likelihood to the predicted probabilities as soft outcomes, on the Arena's
   scale (400 log10, anchored), with bootstrap intervals over prompts and the expected win-rate matrix; the same
   fit on the human votes, and on the pipeline's style-controlled probabilities when it gives them.
4. outputs in --output_dir: leaderboard.md / .csv / .json, battles.csv (every battle's probabilities),
   ratings.png, win_rates.png; each written to a temporary file and moved into place.
"""

from __future__ import annotations

import array
import csv
import hashlib
import inspect
import io
import itertools
import json
import math
import os
import sqlite3
import sys
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from arena_preference.run_folder import OutputFolderLock, UserError, write_atomically
from precision_arena import PRECISIONS

from arena_preference.ratings import (ELO_SCALE, ScoredBattles, agreement, bootstrap_ratings, fit_davidson,  # noqa: F401
                                      to_ratings, win_rates)

LABELS = ("winner_model_a", "winner_model_b", "winner_tie")
CACHE_VERSION = 1  # bump when what a cached score means changes
# What a run writes into --output_dir (named at the end of the CLI's run).
OUTPUT_FILES = ("leaderboard.md", "leaderboard.csv", "leaderboard.json", "battles.csv", "ratings.png", "win_rates.png")
RESPONSE_COLUMNS = ("prompt", "model", "response")  # + optional prompt_id


@dataclass
class LeaderboardArguments:
    """What to rank, with which model, and how."""

    model_name_or_path: str = field(
        default="out/arena-minilm",
        metadata={"help": "A trained arena-preference model directory (what train.py writes) or an embedded: name."},
    )
    responses: str | None = field(
        default=None,
        metadata={"help": "CSV/JSONL/parquet, one row per answer: prompt, model, response (strings, lists of "
                          "turns or Kaggle JSON-list strings), optional prompt_id to group by (else the prompt "
                          "text). Battles: every pair of models that answered the same prompt."},
    )
    battles: str | None = field(
        default=None,
        metadata={"help": "Battles in any layout arena_dataset.load_arena reads, with model_a / model_b; human "
                          "labels, when present, give human_rating and agreement."},
    )
    output_dir: str = field(default="out/leaderboard", metadata={"help": "Where the outputs are written."})
    max_pairs_per_prompt: int | None = field(
        default=None, metadata={"help": "With --responses: at most this many model pairs per prompt, sampled "
                                        "with --seed (default: all pairs)."},
    )
    anchor: str | None = field(
        default=None, metadata={"help": "MODEL=RATING pins one model's rating (e.g. gpt-4=1000); default: the "
                                        "mean rating is 1000."},
    )
    precision: str = field(
        default="auto",
        metadata={"help": "Encoder arithmetic for scoring: auto (bf16 on CPUs with AMX/AVX512-BF16 and on GPUs; "
                          "elsewhere fp32, run by ONNX Runtime: onnx-fp32), fp32 (PyTorch), onnx-fp32, bf16, fp16, "
                          "int8.", "choices": list(PRECISIONS)},
    )
    bootstrap: int = field(default=100, metadata={"help": "Bootstrap resamples of the prompts (0: no intervals)."})
    seed: int = field(default=0, metadata={"help": "Seed of pair sampling and of the bootstrap."})
    batch_size: int = field(default=16, metadata={"help": "Battles per forward pass."})
    chunk_size: int = field(
        default=1024, metadata={"help": "Battles read, shared out and scored per step (bounds memory)."}
    )
    cache_dir: str | None = field(
        default=None,
        metadata={"help": "Score cache folder (default: $HF_HOME/arena_preference/scores); 'none' disables it."},
    )


class LeaderboardError(ValueError):
    """A problem with the input or the options, reported in one line by the CLI."""


# -------------------------------------------------------------------------------------------------------- battles
def _stamp(path: str) -> str:
    """What makes a cached Arrow copy of `path` stale: its absolute path and the sha256 of its bytes (not its size
    and mtime, which `cp -p` and `rsync -t` keep). A string: datasets would shard the generator over a list."""
    from arena_preference.battle_files import read_bytes

    return f"{os.path.abspath(path)}:{hashlib.sha256(read_bytes(path)).hexdigest()}"


def _response_rows(path: str, stamp: str) -> Iterator[dict[str, Any]]:
    """Rows of a responses file, validated: {group, row, location, prompt (turns), model, response (turns)}.
    Reads through the same record readers as arena_dataset (CSV streamed, with physical line numbers)."""
    from arena_dataset import InvalidBattleError
    from arena_preference.battle_files import Unparsed, read_records
    from encoding_arena import BattleFieldError, as_turns

    columns, records = read_records(path)
    missing = [c for c in RESPONSE_COLUMNS if c not in columns]
    if missing:
        raise InvalidBattleError(f"{path}: missing column(s) {missing}; a responses file needs "
                                 f"{list(RESPONSE_COLUMNS)} (and optionally prompt_id)", "missing column")
    by_id = "prompt_id" in columns
    for row, (location, record) in enumerate(records):
        def problem(field: str, message: str) -> InvalidBattleError:
            return InvalidBattleError(f"{path}, {location}, field {field!r}: {message}", "invalid row")

        if isinstance(record, Unparsed):
            raise problem("(row)", f"not a readable record ({record})")
        turns = {}
        for name in ("prompt", "response"):
            try:  # the pipeline's reading: a string, a list of turns or a Kaggle JSON-list string
                turns[name] = as_turns(record.get(name), name)
            except BattleFieldError as err:
                raise problem(err.field, str(err).split(": ", 1)[-1]) from None
        if len(turns["response"]) != len(turns["prompt"]):
            raise problem("response", f"expected {len(turns['prompt'])} turn(s) like prompt, a turn per user "
                                      f"turn, got {len(turns['response'])}")
        model = record.get("model")
        if not isinstance(model, str) or not model.strip():
            raise problem("model", f"expected a model name, got {model!r}")
        if by_id:
            key = record.get("prompt_id")
            if key is None or str(key).strip() == "":
                raise problem("prompt_id", "empty; give every row a prompt id (or drop the column)")
            group = f"id:{key}"
        else:  # the prompt itself, whitespace collapsed, every turn
            group = "text:" + json.dumps([" ".join(t.split()) for t in turns["prompt"]], ensure_ascii=False)
        yield {"group": group, "row": row, "location": location, "prompt": turns["prompt"], "model": model.strip(),
               "response": turns["response"]}


def load_responses(path: str) -> Any:
    """A responses file -> a `datasets.Dataset` (Arrow on disk) sorted by prompt group, rows validated.

    Raises `arena_dataset.InvalidBattleError` naming the file, the line/row and the field of a bad row."""
    import datasets
    from datasets.exceptions import DatasetGenerationError

    from arena_dataset import InvalidBattleError

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such responses file")
    features = datasets.Features({
        "group": datasets.Value("string"), "row": datasets.Value("int64"), "location": datasets.Value("string"),
        "prompt": datasets.List(datasets.Value("string")), "model": datasets.Value("string"),
        "response": datasets.List(datasets.Value("string")),
    })
    try:
        rows = datasets.Dataset.from_generator(_response_rows, features=features,
                                               gen_kwargs={"path": path, "stamp": _stamp(path)})
    except DatasetGenerationError as err:
        if isinstance(err.__cause__, InvalidBattleError):
            raise err.__cause__ from None
        raise
    with warnings.catch_warnings():
        # datasets' sort passes pyarrow a sort option that pyarrow >= 25 deprecates ("Specifying null_placement in
        # SortOptions is deprecated"): printed on every --responses run, about nothing the user can change.
        warnings.filterwarnings("ignore", message="Specifying null_placement", category=FutureWarning)
        return rows.sort(["group", "row"])


def _pairs(models: list[str], group: str, max_pairs: int | None, seed: int) -> list[tuple[int, int]]:
    """Index pairs (i < j, models sorted by name) of one prompt; at most `max_pairs`, sampled with a generator
    seeded by (seed, prompt) so that a prompt's sample does not depend on the order prompts are read in."""
    pairs = list(itertools.combinations(range(len(models)), 2))
    if max_pairs is not None and len(pairs) > max_pairs:
        rng = np.random.default_rng([seed, int(hashlib.sha1(group.encode()).hexdigest()[:12], 16)])
        pairs = [pairs[i] for i in sorted(rng.choice(len(pairs), max_pairs, replace=False))]
    return pairs


def battles_from_responses(rows: Any, path: str, max_pairs: int | None = None, seed: int = 0,
                           chunk_size: int = 1024) -> Iterator[dict[str, Any]]:
    """Battles {id, group, model_a, model_b, prompt, response_a, response_b} from `load_responses` rows, one prompt
    at a time (only one prompt's answers are held). Model A is the name that sorts first."""
    from arena_dataset import InvalidBattleError

    def emit(group: str, answers: list[dict]) -> Iterator[dict[str, Any]]:
        first = answers[0]
        for other in answers[1:]:
            if other["prompt"] != first["prompt"]:
                raise InvalidBattleError(f"{path}, {other['location']}, field 'prompt': differs from the prompt of "
                                         f"{first['location']} with the same prompt_id", "invalid row")
        answers = sorted(answers, key=lambda a: (a["model"], a["row"]))
        for a, b in zip(answers, answers[1:]):
            if a["model"] == b["model"]:
                raise InvalidBattleError(f"{path}, {b['location']}, field 'model': {b['model']!r} answered this "
                                         f"prompt already at {a['location']}", "duplicate answer")
        for i, j in _pairs([a["model"] for a in answers], group, max_pairs, seed):
            yield {"group": group, "model_a": answers[i]["model"], "model_b": answers[j]["model"],
                   "prompt": first["prompt"], "response_a": answers[i]["response"],
                   "response_b": answers[j]["response"]}

    group, answers, count = None, [], 0
    for batch in rows.iter(batch_size=chunk_size):
        for k in range(len(batch["row"])):
            row = {key: values[k] for key, values in batch.items()}
            if row["group"] != group and answers:
                for battle in emit(group, answers):
                    yield {"id": count, **battle}
                    count += 1
                answers = []
            group = row["group"]
            answers.append(row)
    if answers:
        for battle in emit(group, answers):
            yield {"id": count, **battle}
            count += 1


def load_battles(path: str) -> Any:
    """Battles through `arena_dataset.load_arena` (its row errors name file, line, id and field); every battle must
    name both models."""
    from arena_dataset import InvalidBattleError, load_arena

    data = load_arena(path)
    for start in range(0, len(data), 10_000):
        chunk = data[start : start + 10_000]
        for side in ("model_a", "model_b"):
            for row_id, name in zip(chunk["id"], chunk[side]):
                if name == "unknown":  # what load_arena writes for a missing or empty model name
                    raise InvalidBattleError(f"{path}, id {row_id}, field {side!r}: no model name; a leaderboard "
                                             "needs model_a and model_b on every battle", "missing model name")
    return data


def battles_from_dataset(data: Any, chunk_size: int = 1024) -> Iterator[dict[str, Any]]:
    """Battles of a `load_battles` dataset, read `chunk_size` rows at a time; `group` is the prompt's first user
    turn (`battle_transforms.prompt_group`), the unit the bootstrap resamples."""
    from arena_preference.battle_transforms import prompt_group

    for batch in data.iter(batch_size=chunk_size):
        for k in range(len(batch["id"])):
            battle = {key: values[k] for key, values in batch.items()}
            battle["group"] = prompt_group(battle["prompt"])
            yield battle


# -------------------------------------------------------------------------------------------------------- scoring
def model_fingerprint(model_name_or_path: str, model: Any = None) -> str:
    """sha256 of a saved model's config.json and *.safetensors files (any change to the weights or the config,
    max_length included, changes it); for an embedded: name, of the loaded model's weights and config."""
    digest = hashlib.sha256()
    folder = Path(model_name_or_path)
    if folder.is_dir():
        for file in [folder / "config.json", *sorted(folder.glob("*.safetensors"))]:
            digest.update(file.name.encode())
            with open(file, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    else:
        from precision_arena import weights_digest

        digest.update(weights_digest(model).encode())
        digest.update(model.config.to_json_string(use_diff=False).encode())
    return digest.hexdigest()


def battle_key(battle: dict[str, Any]) -> str:
    """sha256 of the battle as the model reads it: prompt and both answers as lists of turns
    (`encoding_arena.normalise_battle`, the pipeline's reading)."""
    from encoding_arena import BATTLE_KEYS, normalise_battle

    turns = normalise_battle(battle)
    return hashlib.sha256(json.dumps([turns[k] for k in BATTLE_KEYS], ensure_ascii=False).encode()).hexdigest()


class ScoreCache:
    """Scores on disk: one SQLite file per (model fingerprint, scoring settings), battle key -> 3 probabilities
    (+3 style-controlled). SQLite (stdlib) because it looks up a chunk of keys without loading the rest and
    lets several processes read at once. `path=None` caches nothing."""

    def __init__(self, path: Path | None):
        self.connection = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.connection = sqlite3.connect(path, timeout=120)
            with self.connection:
                self.connection.execute("CREATE TABLE IF NOT EXISTS scores (key TEXT PRIMARY KEY, a REAL, b REAL, "
                                        "tie REAL, sc_a REAL, sc_b REAL, sc_tie REAL)")

    def get(self, keys: Sequence[str]) -> dict[str, tuple]:
        if self.connection is None:
            return {}
        found = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):
            part = unique[start : start + 500]
            query = f"SELECT * FROM scores WHERE key IN ({','.join('?' * len(part))})"
            # SQLite stores NaN (no style-controlled probabilities) as NULL
            found.update({row[0]: tuple(math.nan if v is None else v for v in row[1:])
                          for row in self.connection.execute(query, part)})
        return found

    def put(self, items: Iterable[tuple[str, tuple]]) -> None:
        if self.connection is not None:
            with self.connection:
                self.connection.executemany("INSERT OR REPLACE INTO scores VALUES (?,?,?,?,?,?,?)",
                                            [(key, *values) for key, values in items])


def style_control_reason(judge: Any, battle: dict[str, Any]) -> str | None:
    """None when the pipeline gives style-controlled probabilities for this model, else why not. Detected, not
    assumed: the pipeline must take `style_control=True` and return `result["style_controlled"]`."""
    if "style_control" not in inspect.signature(judge._sanitize_parameters).parameters:
        return ("this arena-preference pipeline has no style_control option (pipeline_arena.py), so there are no "
                "style-controlled probabilities to rate")
    try:
        result = judge(dict(battle), style_control=True)
    except (TypeError, ValueError, AttributeError) as err:  # e.g. a model without content-only logits
        return f"the pipeline cannot style-control this model: {' '.join(str(err).split())}"
    if not isinstance(result.get("style_controlled"), dict):
        return "the pipeline returned no style_controlled probabilities for this model"
    return None


def score(judge: Any, battles: list[dict[str, Any]], keys: list[str], cache: ScoreCache, style_control: bool,
          batch_size: int) -> list[tuple[tuple, bool]]:
    """(6 floats: P(A), P(B), P(tie), then the style-controlled three or NaN; whether it was scored now) per battle,
    from the cache where it has the battle, else from the pipeline with swap test-time averaging."""
    cached = cache.get(keys)
    todo = [i for i, key in enumerate(keys) if key not in cached]
    fresh: dict[int, tuple] = {}
    if todo:
        options = {"swap_tta": True, **({"style_control": True} if style_control else {})}
        inputs = [{k: battles[i][k] for k in ("prompt", "response_a", "response_b")} for i in todo]
        for i, result in zip(todo, judge(inputs, batch_size=batch_size, **options)):
            controlled = result.get("style_controlled") or {}
            fresh[i] = (*(result[label] for label in LABELS), *(controlled.get(label, math.nan) for label in LABELS))
    return [(fresh[i], True) if i in fresh else (tuple(cached[key]), False) for i, key in enumerate(keys)]


# -------------------------------------------------------------------------------------------------------- ratings
class Tally:
    """Builds ScoredBattles chunk by chunk in compact arrays (rank 0)."""

    def __init__(self) -> None:
        self.models: dict[str, int] = {}
        self.groups: dict[str, int] = {}
        self.ints = {name: array.array("q") for name in ("model_a", "model_b", "group", "label")}
        self.floats = array.array("d")

    def add(self, battle: dict[str, Any], values: tuple) -> None:
        self.ints["model_a"].append(self.models.setdefault(battle["model_a"], len(self.models)))
        self.ints["model_b"].append(self.models.setdefault(battle["model_b"], len(self.models)))
        self.ints["group"].append(self.groups.setdefault(battle["group"], len(self.groups)))
        label = battle.get("label")
        self.ints["label"].append(-1 if label is None else int(label))
        self.floats.extend(values)

    def result(self, style: bool) -> ScoredBattles:
        if not self.floats:
            raise LeaderboardError("no battles: the input has no prompt answered by two or more models")
        values = np.frombuffer(self.floats, dtype=np.float64).reshape(-1, 6)
        ints = {name: np.frombuffer(a, dtype=np.int64) for name, a in self.ints.items()}
        labels = ints["label"] if (ints["label"] >= 0).all() else None
        return ScoredBattles(list(self.models), ints["model_a"], ints["model_b"], ints["group"], values[:, :3].copy(),
                             values[:, 3:].copy() if style else None, labels)


def parse_anchor(anchor: str | None, models: Sequence[str] | None = None) -> tuple[str, float] | None:
    """'MODEL=RATING' -> (MODEL, RATING); the model must be on the leaderboard when `models` is given."""
    if anchor is None:
        return None
    name, sep, value = anchor.rpartition("=")
    try:
        parsed = (name, float(value))
    except ValueError:
        parsed = None
    if not sep or not name or parsed is None:
        raise LeaderboardError(f"--anchor {anchor!r}: expected MODEL=RATING, e.g. gpt-4=1000")
    if models is not None and name not in models:
        raise LeaderboardError(f"--anchor {anchor!r}: no model {name!r} on the leaderboard; models: {sorted(models)}")
    return parsed


def rate(scored: ScoredBattles, bootstrap: int = 100, seed: int = 0, anchor: str | None = None,
         style_reason: str | None = None) -> dict[str, Any]:
    """The leaderboard of scored battles: rows sorted by rating, the win-rate matrix, nu, and (with labels) the
    human ratings and `agreement`. `style_reason` says why style-controlled ratings are absent (None: rate them)."""
    pinned = parse_anchor(anchor, scored.models)
    m = len(scored.models)
    theta, nu = fit_davidson(scored.model_a, scored.model_b, scored.probs, m)
    ratings = to_ratings(theta, scored.models, pinned)
    samples = bootstrap_ratings(scored, scored.probs, bootstrap, seed, pinned) if bootstrap > 0 else None
    battles = np.bincount(scored.model_a, minlength=m) + np.bincount(scored.model_b, minlength=m)
    style = None
    if style_reason is None and scored.style_probs is not None and np.isfinite(scored.style_probs).all():
        style = to_ratings(fit_davidson(scored.model_a, scored.model_b, scored.style_probs, m)[0], scored.models,
                           pinned)
    elif style_reason is None:
        style_reason = ("no style-controlled probabilities were given" if scored.style_probs is None else
                        "some battles have no style-controlled probabilities")
    human = None
    if scored.labels is not None:
        human = to_ratings(fit_davidson(scored.model_a, scored.model_b, np.eye(3)[scored.labels], m)[0],
                           scored.models, pinned)
    rows = []
    for k in np.argsort(-ratings, kind="stable"):
        row = {"model": scored.models[k], "rating": float(ratings[k]),
               "ci_low": float(np.percentile(samples[:, k], 2.5)) if samples is not None else None,
               "ci_high": float(np.percentile(samples[:, k], 97.5)) if samples is not None else None,
               "battles": int(battles[k])}
        if human is not None:
            row["human_rating"] = float(human[k])
        row["style_controlled_rating"] = float(style[k]) if style is not None else None
        rows.append(row)
    order = [scored.models.index(r["model"]) for r in rows]
    board: dict[str, Any] = {
        "models": rows,
        "win_rate": {"models": [scored.models[k] for k in order],
                     "matrix": win_rates(theta, nu)[np.ix_(order, order)].round(6).tolist()},
        "tie_parameter_nu": nu,
        "style_controlled_rating_note": style_reason,
    }
    if human is not None:
        board["agreement"] = agreement(ratings, human, scored.probs, scored.labels)
        if style is not None:  # does the content-only leaderboard track the votes better than the full one?
            board["agreement_style_controlled"] = agreement(style, human, scored.style_probs, scored.labels)
    return board


# -------------------------------------------------------------------------------------------------------- outputs
def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def markdown(board: dict[str, Any]) -> str:
    info, labelled = board["produced_by"], "agreement" in board
    head = "| rank | model | rating | 95% CI | battles |" + (" human rating |" if labelled else "") + \
        " style-controlled |"
    lines = [f"# Leaderboard: {info['n_models']} models, {info['n_battles']} battles on {info['n_prompts']} prompts",
             "", f"Model `{info['model_name_or_path']}` (fingerprint {info['model_fingerprint'][:12]}), "
             f"{info['input_kind']} `{info['input']}`; Davidson (Bradley-Terry with ties) ratings on the 400·log10 "
             f"scale ({'anchored ' + info['anchor'] if info['anchor'] else 'mean 1000'}), {info['bootstrap']} "
             f"bootstrap resamples of prompts (seed {info['seed']}).", "", head,
             "| --- " * (head.count("|") - 1) + "|"]
    for rank, row in enumerate(board["models"], 1):
        ci = f"{_fmt(row['ci_low'])} – {_fmt(row['ci_high'])}" if row["ci_low"] is not None else ""
        lines.append(f"| {rank} | {row['model']} | {_fmt(row['rating'])} | {ci} | {row['battles']} |"
                     + (f" {_fmt(row['human_rating'])} |" if labelled else "")
                     + f" {_fmt(row['style_controlled_rating'])} |")
    if board["style_controlled_rating_note"]:
        lines += ["", f"Style-controlled ratings are absent: {board['style_controlled_rating_note']}."]
    if labelled:
        a = board["agreement"]
        lines += ["", f"Agreement with the human votes: Kendall tau {a['kendall_tau']:.3f}, Spearman "
                      f"{a['spearman']:.3f}, pairwise order accuracy {a['pairwise_accuracy']:.3f}, log loss per "
                      f"battle {a['log_loss']:.4f}."]
        if "agreement_style_controlled" in board:
            a = board["agreement_style_controlled"]
            lines += ["", f"The style-controlled ratings' agreement: Kendall tau {a['kendall_tau']:.3f}, Spearman "
                          f"{a['spearman']:.3f}, pairwise order accuracy {a['pairwise_accuracy']:.3f}."]
    return "\n".join(lines) + "\n"


def table_csv(board: dict[str, Any]) -> str:
    keys = list(board["models"][0])
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["rank", *keys], lineterminator="\n")
    writer.writeheader()
    for rank, row in enumerate(board["models"], 1):
        writer.writerow({"rank": rank, **{k: ("" if v is None else v) for k, v in row.items()}})
    return out.getvalue()


def plot(board: dict[str, Any], output_dir: Path) -> None:
    """ratings.png (ratings with their bootstrap intervals, human ratings beside) and win_rates.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = board["models"][::-1]
    y = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.5))
    rating = np.array([r["rating"] for r in rows])
    if rows[0]["ci_low"] is not None:
        # With few bootstrap rounds a percentile interval may miss the full-data estimate; matplotlib refuses a
        # negative error bar, so the bar stops at the estimate (leaderboard.csv keeps the interval as computed).
        err = np.clip([[r["rating"] - r["ci_low"] for r in rows], [r["ci_high"] - r["rating"] for r in rows]], 0, None)
        ax.errorbar(rating, y, xerr=err, fmt="o", color="#3a7", capsize=3, label="predicted (95% CI)")
    else:
        ax.plot(rating, y, "o", color="#3a7", label="predicted")
    if "agreement" in board:
        ax.plot([r["human_rating"] for r in rows], y, "x", color="#c33", label="human votes")
    if rows[0]["style_controlled_rating"] is not None:
        ax.plot([r["style_controlled_rating"] for r in rows], y, "s", color="#888", markersize=4, fillstyle="none",
                label="style-controlled")
    ax.set_yticks(y, [r["model"] for r in rows])
    ax.set_xlabel("rating (400·log10 scale)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    write_atomically(output_dir / "ratings.png", lambda temp: fig.savefig(temp, format="png", dpi=110))
    plt.close(fig)

    names, matrix = board["win_rate"]["models"], np.array(board["win_rate"]["matrix"])
    fig, ax = plt.subplots(figsize=(0.6 * len(names) + 2.5, 0.6 * len(names) + 2))
    image = ax.imshow(matrix, cmap="RdBu", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    if len(names) <= 15:
        for (i, j), value in np.ndenumerate(matrix):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7)
    ax.set_title("expected score of row vs column (win + tie/2)", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    write_atomically(output_dir / "win_rates.png", lambda temp: fig.savefig(temp, format="png", dpi=110))
    plt.close(fig)


def write_outputs(board: dict[str, Any], output_dir: Path) -> None:
    write_atomically(output_dir / "leaderboard.json",
                     lambda temp: temp.write_text(json.dumps(board, indent=2, ensure_ascii=False) + "\n"))
    write_atomically(output_dir / "leaderboard.csv", lambda temp: temp.write_text(table_csv(board)))
    write_atomically(output_dir / "leaderboard.md", lambda temp: temp.write_text(markdown(board)))
    plot(board, output_dir)


# ------------------------------------------------------------------------------------------------------------ run
def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _default_cache_dir() -> Path:
    from huggingface_hub.constants import HF_HOME

    return Path(HF_HOME) / "arena_preference" / "scores"


def run(args: LeaderboardArguments) -> dict[str, Any] | None:
    """Score, fit and write the leaderboard; returns its JSON content on the main process (None on the others)."""
    import torch
    from accelerate import PartialState
    from accelerate.utils import gather_object
    from tqdm.auto import tqdm
    from transformers import set_seed

    from arena_preference.model_loading import load_model
    from pipeline_arena import ArenaPreferencePipeline

    if (args.responses is None) == (args.battles is None):
        raise LeaderboardError("give exactly one of --responses and --battles")
    for name in ("bootstrap", "batch_size", "chunk_size", "max_pairs_per_prompt"):
        value = getattr(args, name)
        if value is not None and (value < 0 or (value == 0 and name != "bootstrap")):
            raise LeaderboardError(f"--{name} {value}: expected a positive number")
    parse_anchor(args.anchor)
    # On CPU, PartialState(cpu=True) is what makes torchrun's processes one gloo group that shards and gathers
    # (plain PartialState() lets each process score everything, and PartialState(backend="gloo") gathers only the local shard: both verified with torchrun on CPU). On GPUs the plain one.
    state = PartialState(cpu=not torch.cuda.is_available())
    is_main = state.is_main_process

    path, kind = (args.responses, "responses") if args.responses is not None else (args.battles, "battles")
    with state.main_process_first():  # one process writes the Arrow copy, the others read it
        data = load_responses(path) if kind == "responses" else load_battles(path)
    if kind == "responses":
        battles = battles_from_responses(data, path, args.max_pairs_per_prompt, args.seed, args.chunk_size)
        total = None  # known only once every prompt is read
    else:
        battles, total = battles_from_dataset(data, args.chunk_size), len(data)

    set_seed(args.seed)  # an embedded: name gets a fresh head: the same on every process
    model, tokenizer = load_model(args.model_name_or_path)
    judge = ArenaPreferencePipeline(model=model, tokenizer=tokenizer, device=state.device, precision=args.precision)
    fingerprint = model_fingerprint(args.model_name_or_path, model)
    style_reason: str | None = "not checked"
    cache, tally, scored_now = None, Tally(), 0
    output_dir = Path(args.output_dir)
    # Per-battle predictions, streamed to a temporary file on rank 0 and moved into place at the end.
    battles_temp, handle, writer = None, None, None
    # One run per folder, as train.py: two leaderboards written at once into one folder would mix their files.
    lock = OutputFolderLock(output_dir).acquire() if is_main else None
    if is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        fd, battles_temp = tempfile.mkstemp(prefix=".battles.csv.", dir=output_dir)
        handle = os.fdopen(fd, "w", newline="", encoding="utf-8")
        writer = csv.writer(handle)
    try:
        progress = tqdm(total=total, unit="battle", desc="Scoring battles", disable=not is_main)
        for chunk in _chunks(battles, args.chunk_size):
            if cache is None:  # settings known once the first battle is there
                style_reason = style_control_reason(judge, chunk[0])
                use_cache = args.cache_dir is None or args.cache_dir.lower() != "none"
                folder = Path(args.cache_dir) if args.cache_dir and use_cache else _default_cache_dir()
                name = (f"{fingerprint[:32]}-{judge.precision}-swap_tta-style{int(style_reason is None)}"
                        f"-v{CACHE_VERSION}.sqlite")
                cache = ScoreCache(folder / name if use_cache else None)
                if writer is not None:
                    writer.writerow(["id", "group", "model_a", "model_b", *LABELS,
                                     *(f"style_controlled_{label}" for label in LABELS), "label", "scored_now"])
            with state.split_between_processes(chunk) as mine:
                keys = [battle_key(b) for b in mine]
                local = score(judge, mine, keys, cache, style_reason is None, args.batch_size)
                local = [(key, values, new) for key, (values, new) in zip(keys, local)]
            gathered = gather_object(local) if state.num_processes > 1 else local
            if len(gathered) != len(chunk):
                raise RuntimeError(f"gathered {len(gathered)} scores for {len(chunk)} battles")
            if is_main:
                cache.put((key, values) for key, values, new in gathered if new)
                for battle, (_, values, new) in zip(chunk, gathered):
                    tally.add(battle, values)
                    writer.writerow([battle["id"], battle["group"], battle["model_a"], battle["model_b"],
                                     *(f"{v:.6f}" for v in values), battle.get("label", ""), int(new)])
                scored_now += sum(new for _, _, new in gathered)
                progress.update(len(chunk))
                progress.set_postfix(scored_now=scored_now)
        progress.close()
        if not is_main:
            state.wait_for_everyone()
            return None
        handle.close()
        scored = tally.result(style=style_reason is None)
        board = rate(scored, args.bootstrap, args.seed, args.anchor, style_reason)
        board["produced_by"] = {
            "model_name_or_path": args.model_name_or_path, "model_fingerprint": fingerprint, "input": path,
            "precision": judge.precision,
            "input_kind": kind, "n_battles": len(scored.probs), "n_prompts": int(scored.group.max()) + 1,
            "n_models": len(scored.models), "labelled": scored.labels is not None, "bootstrap": args.bootstrap,
            "seed": args.seed, "anchor": args.anchor, "max_pairs_per_prompt": args.max_pairs_per_prompt,
            "swap_tta": True, "scored_now": scored_now, "from_cache": len(scored.probs) - scored_now,
            "num_processes": state.num_processes, "arguments": asdict(args),
        }
        os.chmod(battles_temp, 0o644)
        os.replace(battles_temp, output_dir / "battles.csv")
        write_outputs(board, output_dir)
    finally:
        if handle is not None:
            handle.close()
        if battles_temp is not None and os.path.exists(battles_temp):
            os.unlink(battles_temp)
        if lock is not None:
            lock.release()
    state.wait_for_everyone()
    return board


def leaderboard(model_name_or_path: str, *, responses: str | None = None, battles: str | None = None,
                output_dir: str = "out/leaderboard", **options: Any) -> dict[str, Any] | None:
    """Function form of the CLI: `leaderboard("out/arena-minilm", responses="answers.jsonl", output_dir="out/b",
    bootstrap=100, anchor="gpt-4=1000")` -> the leaderboard.json content (also written to `output_dir`)."""
    return run(LeaderboardArguments(model_name_or_path=model_name_or_path, responses=responses, battles=battles,
                                    output_dir=output_dir, **options))


def parse_args(argv: list[str] | None = None) -> LeaderboardArguments:
    from transformers import HfArgumentParser

    parser = HfArgumentParser(LeaderboardArguments, prog="leaderboard.py", description=__doc__.split("\n\n")[0])
    return parser.parse_args_into_dataclasses(args=argv)[0]


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    """CLI entry point; user errors end with one line on stderr and exit status 1 (ARENA_DEBUG=1: traceback)."""
    args = parse_args(argv)
    try:
        board = run(args)
    except (UserError, ValueError, FileNotFoundError, OSError, ImportError) as err:
        if os.environ.get("ARENA_DEBUG", "") not in ("", "0"):
            raise
        print(f"leaderboard.py: error: {' '.join(str(err).split())} (ARENA_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        sys.exit(1)
    if board is not None:
        print(markdown(board), end="")
        # stdout holds the table (for piping); where the files went goes beside the logs, on stderr
        written = [name for name in OUTPUT_FILES if (Path(args.output_dir) / name).is_file()]
        print(f"leaderboard.py: wrote {', '.join(written)} to {args.output_dir}", file=sys.stderr)
    return board


def cli() -> None:
    """The `arena-leaderboard` console script: `main` without its return value (a console script passes what it
    returns to sys.exit, which would print it and exit with status 1)."""
    main()


if __name__ == "__main__":
    cli()
