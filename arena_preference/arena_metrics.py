"""arena_metrics: an `evaluate` metric for 3-way preference predictions (A wins, B wins, tie).

Shipped inside the package because Hub metrics cannot be fetched offline; load it by path (a wheel install has it
too):

    >>> import evaluate
    >>> from arena_preference.scoring import METRIC_PATH
    >>> metric = evaluate.load(str(METRIC_PATH))  # doctest: +SKIP
    >>> metric.compute(predictions=[[0.7, 0.2, 0.1], [0.2, 0.5, 0.3]], references=[0, 2])  # doctest: +SKIP
    {'log_loss': 0.780..., 'accuracy': 0.5, ...}

Imports only evaluate, datasets, numpy and scikit-learn (the sums are scikit-learn's, not re-derived here).
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np
from sklearn.metrics import accuracy_score, log_loss, precision_recall_fscore_support

LABELS = ("winner_model_a", "winner_model_b", "winner_tie")

_DESCRIPTION = """Log loss (the Kaggle LMSYS metric, lower is better), accuracy, macro precision, recall and F1, and
the F1 of each class, for predicted probabilities of winner_model_a, winner_model_b and winner_tie."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of 3 floats per example): P(winner_model_a), P(winner_model_b), P(winner_tie). Rows are
        renormalised to sum to 1 (as Kaggle's scorer does); a row with a negative value or a zero sum is an error.
    references (`list` of `int`): the true class, 0 = winner_model_a, 1 = winner_model_b, 2 = winner_tie.
Returns:
    log_loss, accuracy, precision_macro, recall_macro, f1_macro, f1_winner_model_a, f1_winner_model_b,
    f1_winner_tie (floats). Accuracy and the F1 scores use the most probable class as the prediction.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ArenaMetrics(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("float64"), length=3),
                 "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references) -> dict[str, float]:
        probs = np.asarray(predictions, dtype=np.float64).reshape(-1, 3)
        labels = np.asarray(references, dtype=np.int64)
        if len(probs) == 0:
            raise ValueError("arena_metrics: no predictions to score")
        if (probs < 0).any() or not np.isfinite(probs).all():
            raise ValueError("arena_metrics: predictions must be finite, non-negative probabilities")
        sums = probs.sum(axis=1, keepdims=True)
        if (sums <= 0).any():
            raise ValueError("arena_metrics: a prediction row sums to 0; expected probabilities")
        if ((labels < 0) | (labels > 2)).any():
            raise ValueError(f"arena_metrics: references must be 0, 1 or 2 ({', '.join(LABELS)})")
        probs = probs / sums
        predicted = probs.argmax(axis=1)
        classes = list(range(len(LABELS)))
        precision, recall, f1, _ = precision_recall_fscore_support(
            labels, predicted, labels=classes, average="macro", zero_division=0
        )
        _, _, f1_each, _ = precision_recall_fscore_support(
            labels, predicted, labels=classes, average=None, zero_division=0
        )
        # sklearn clips probabilities away from 0, so a confident wrong answer costs a lot but stays finite.
        results = {
            "log_loss": float(log_loss(labels, probs, labels=classes)),
            "accuracy": float(accuracy_score(labels, predicted)),
            "precision_macro": float(precision),
            "recall_macro": float(recall),
            "f1_macro": float(f1),
        }
        results.update({f"f1_{name}": float(value) for name, value in zip(LABELS, f1_each)})
        return results
