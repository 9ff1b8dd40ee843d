"""Distillation: train on another model's probabilities (soft targets) beside, or instead of, the votes.

    python train.py --train_file train.csv --teacher_file teacher/predictions.csv --distill_weight 0.5 ...

The teacher file has the layout `--do_predict` writes (`id,winner_model_a,winner_model_b,winner_tie`) and is joined
to the training battles by `id`. Each training battle gets a soft label

    target = (1 - w) * one_hot(vote) + w * teacher          (w = --distill_weight)

and the model's loss, cross-entropy against a soft label, is then (1 - w) * CE(vote) + w * CE(teacher), where
CE(teacher) = KL(teacher || model) + H(teacher): minimising it minimises the KL to the teacher. A battle without a
vote (a training file without labels) is trained on the teacher alone; a voted battle the teacher file lacks keeps
its vote. The targets go in a `labels` column of 3 floats, which ArenaCollator and ArenaModel.loss read as soft
labels and swap_battles mirrors.
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path
from typing import Any

from arena_preference.run_folder import UserError
from configuration_arena import LABELS

logger = logging.getLogger("train")
# How far a teacher row's probabilities may sum from 1 (the 6 decimals --do_predict writes) before it is refused.
SUM_TOLERANCE = 1e-3


def read_teacher(path: str | Path) -> dict[str, list[float]]:
    """{battle id (as text): [P(A), P(B), P(tie)]} from a predictions file. Errors name the file, line and field."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--teacher_file {path}: no such file")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in ("id", *LABELS) if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"--teacher_file {path}: missing column(s) {missing}; expected the layout --do_predict "
                            f"writes: id,{','.join(LABELS)}")
        teacher: dict[str, list[float]] = {}
        for line, row in enumerate(reader, start=2):
            try:
                probs = [float(row[label]) for label in LABELS]
            except (TypeError, ValueError):
                raise UserError(f"--teacher_file {path}, line {line} (id {row['id']}): probabilities "
                                f"{[row[label] for label in LABELS]} are not numbers") from None
            if not all(math.isfinite(p) and p >= 0 for p in probs) or abs(sum(probs) - 1) > SUM_TOLERANCE:
                raise UserError(f"--teacher_file {path}, line {line} (id {row['id']}): {probs} are not three "
                                "probabilities summing to 1")
            key = str(row["id"]).strip()
            if key in teacher:
                raise UserError(f"--teacher_file {path}, line {line}: id {key} appears twice")
            total = sum(probs)
            teacher[key] = [p / total for p in probs]
    if not teacher:
        raise UserError(f"--teacher_file {path}: no rows")
    return teacher


def soft_targets(label: int | None, teacher: list[float] | None, weight: float) -> list[float]:
    """The training target of one battle: the vote and the teacher mixed by `weight` (see the module docstring).

    >>> soft_targets(0, [0.5, 0.25, 0.25], 0.5)
    [0.75, 0.125, 0.125]
    """
    if teacher is None:
        return [float(label == k) for k in range(3)]
    if label is None:
        return list(teacher)
    return [(1 - weight) * float(label == k) + weight * teacher[k] for k in range(3)]


def add_teacher_targets(train: Any, teacher_file: str | Path, weight: float) -> Any:
    """The training battles (a datasets.Dataset in the arena schema, with or without `label`) with a `labels`
    column of soft targets. Raises UserError when no battle is in the teacher file, or when an unlabelled battle is
    not (it would have no target at all)."""
    import datasets

    if not 0 <= weight <= 1:
        raise UserError(f"--distill_weight {weight}: expected a number from 0 (votes only) to 1 (teacher only)")
    teacher = read_teacher(teacher_file)
    ids = [str(i).strip() for i in train["id"]]
    labels = train["label"] if "label" in train.column_names else [None] * len(ids)
    found = sum(i in teacher for i in ids)
    if not found:
        raise UserError(f"--teacher_file {teacher_file}: none of the {len(ids)} training battles' ids is in it "
                        f"(e.g. training id {ids[0]!r}, teacher id {next(iter(teacher))!r})")
    lacking = [i for i, label in zip(ids, labels) if label is None and i not in teacher]
    if lacking:
        raise UserError(f"--teacher_file {teacher_file}: {len(lacking)} unlabelled training battle(s) have no "
                        f"teacher row either (e.g. id {lacking[0]}); they would have no target")
    targets = [soft_targets(label, teacher.get(i), weight) for i, label in zip(ids, labels)]
    logger.info("distillation: %d of %d training battles have teacher targets (weight %g)%s", found, len(ids),
                weight, "" if "label" in train.column_names else "; no votes: the teacher alone")
    column = datasets.List(datasets.Value("float32"), length=3)
    return train.add_column("labels", targets, feature=column)


__all__ = ["add_teacher_targets", "read_teacher", "soft_targets"]
