"""From model outputs to what a run reports: probabilities, the evaluation metrics, the fitted temperature
(temperature scaling), and the Kaggle predictions file.

Temperature scaling is written by hand: transformers, evaluate and scikit-learn have none (sklearn's
CalibratedClassifierCV fits sigmoid/isotonic maps per class, which would break the three probabilities' sum and the
model's A/B symmetry). ArenaModel divides its logits by `config.temperature`, so the fitted value is stored there.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from arena_preference.run_folder import write_atomically

logger = logging.getLogger("train")
METRIC_PATH = Path(__file__).resolve().parent / "arena_metrics.py"  # ships inside the package

MIN_TEMPERATURE, MAX_TEMPERATURE = 0.05, 20.0


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The T in [0.05, 20] that minimises `cross_entropy(logits / T, labels)`.

    Args:
        logits: `(N, 3)` logits as the model returns them (already divided by its current temperature).
        labels: `(N,)` class ids or `(N, 3)` soft labels.
    Returns the factor to multiply the model's current `config.temperature` by.
    """
    if logits.ndim != 2 or logits.shape[0] == 0 or logits.shape[0] != labels.shape[0]:
        raise ValueError(f"expected (N, 3) logits and N labels with N > 0, got {tuple(logits.shape)} and "
                         f"{tuple(labels.shape)}")
    logits, labels = logits.detach().double(), labels.detach()
    if labels.is_floating_point():
        labels = labels.double()
    # The loss is convex in 1/T; a bounded golden-section search on log T is exact enough and cannot diverge.
    low, high = torch.log(torch.tensor(MIN_TEMPERATURE)).item(), torch.log(torch.tensor(MAX_TEMPERATURE)).item()
    ratio = (5**0.5 - 1) / 2

    def loss(log_t: float) -> float:
        return F.cross_entropy(logits / torch.exp(torch.tensor(log_t, dtype=torch.float64)), labels).item()

    a, b = low + (1 - ratio) * (high - low), low + ratio * (high - low)
    fa, fb = loss(a), loss(b)
    for _ in range(60):
        if fa <= fb:
            high, b, fb = b, a, fa
            a = low + (1 - ratio) * (high - low)
            fa = loss(a)
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = loss(b)
    return float(torch.exp(torch.tensor((low + high) / 2)))


def probabilities(logits: Any) -> np.ndarray:
    """`(N, 3)` float64 probabilities from `(N, 3)` logits, or from a Trainer prediction whose first element they
    are (the rank head also returns rewards)."""
    logits = logits[0] if isinstance(logits, (tuple, list)) else logits
    logits = np.asarray(logits, dtype=np.float64)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    return probs / probs.sum(axis=1, keepdims=True)


def build_compute_metrics():
    """compute_metrics for Trainer: the probabilities, scored by the repo's evaluate metric (log loss first)."""
    import evaluate

    # keep_in_memory: no cache files, so several processes (torchrun) never share a lock.
    metric = evaluate.load(str(METRIC_PATH), keep_in_memory=True)

    def compute_metrics(eval_pred) -> dict[str, float]:
        return metric.compute(predictions=probabilities(eval_pred.predictions),
                              references=np.asarray(eval_pred.label_ids))

    return compute_metrics


def calibrate(trainer: Any, output: Any, metrics: dict[str, float]) -> np.ndarray:
    """Fit the temperature on the evaluation predictions (a Trainer PredictionOutput), store it in the model's
    config, record it and the calibrated log loss in `metrics`; returns the calibrated (N, 3) probabilities."""
    logits = output.predictions[0] if isinstance(output.predictions, (tuple, list)) else output.predictions
    logits, labels = torch.as_tensor(np.asarray(logits), dtype=torch.float64), torch.as_tensor(output.label_ids)
    factor = fit_temperature(logits, labels)
    config = trainer.accelerator.unwrap_model(trainer.model).config
    config.temperature = float(config.temperature * factor)
    calibrated = probabilities(logits.numpy() / factor)
    picked = calibrated[np.arange(len(calibrated)), np.asarray(output.label_ids, dtype=int)]
    metrics["eval_log_loss_calibrated"] = float(-np.log(np.clip(picked, 1e-15, None)).mean())
    metrics["temperature"] = config.temperature
    logger.info("calibration: temperature %.3f; eval log loss %.4f -> %.4f (fitted on these battles)",
                config.temperature, metrics["eval_log_loss"], metrics["eval_log_loss_calibrated"])
    return calibrated


def predict(model: Any, tokenizer: Any, test: Any, output_dir: str | Path, batch_size: int, swap_tta: bool,
            precision: str = "auto", style_control: bool = False) -> tuple[Path, str]:
    """Score every test battle with the arena-preference pipeline and write predictions.csv (Kaggle format:
    id,winner_model_a,winner_model_b,winner_tie; one row per input row, in input order). Returns the file and the
    precision the pipeline ran in (`precision_arena.resolve_precision`). With `style_control`, three more columns:
    `style_controlled_<label>`, the content-only probabilities."""
    from tqdm.auto import tqdm

    from configuration_arena import LABELS
    from encoding_arena import BATTLE_KEYS
    from pipeline_arena import ArenaPreferencePipeline

    judge = ArenaPreferencePipeline(model=model, tokenizer=tokenizer, precision=precision)
    battles = ({key: row[key] for key in BATTLE_KEYS} for row in test)
    results = judge(battles, batch_size=batch_size, swap_tta=swap_tta,  # a generator in, a stream out
                    **({"style_control": True} if style_control else {}))
    path = Path(output_dir) / "predictions.csv"

    def write(temp: Path) -> None:
        with open(temp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", *LABELS, *(f"style_controlled_{label}" for label in LABELS if style_control)])
            for battle_id, result in tqdm(zip(test["id"], results), total=len(test), desc="Predicting"):
                content = [f"{result['style_controlled'][label]:.6f}" for label in LABELS] if style_control else []
                writer.writerow([battle_id, *(f"{result[label]:.6f}" for label in LABELS), *content])

    write_atomically(path, write)
    return path, judge.precision


__all__ = ["build_compute_metrics", "calibrate", "predict", "probabilities"]
