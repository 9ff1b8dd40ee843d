"""The rating mathematics of the offline arena, on arrays only: the Davidson fit (Bradley-Terry with ties) to soft
outcomes, the Arena's rating scale, bootstrap intervals over prompts, expected win rates, and the agreement of two
leaderboards. numpy and scipy; no text, no files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ELO_SCALE = 400 / math.log(10)  # rating = 400 log10(pi) = ELO_SCALE * theta, theta = log(pi)


@dataclass
class ScoredBattles:
    """What the fits need, as arrays (about 80 bytes per battle; no text).

    models: names, indexed by `model_a` / `model_b`; model_a, model_b, group: `(N,)` ints (group: the prompt, the
    unit of the bootstrap); probs: `(N, 3)` predicted P(A), P(B), P(tie); style_probs: `(N, 3)` or None;
    labels: `(N,)` human votes 0/1/2, or None.
    """

    models: list[str]
    model_a: np.ndarray
    model_b: np.ndarray
    group: np.ndarray
    probs: np.ndarray
    style_probs: np.ndarray | None = None
    labels: np.ndarray | None = None



def fit_davidson(model_a: np.ndarray, model_b: np.ndarray, outcomes: np.ndarray, n_models: int,
                 weights: np.ndarray | None = None, ridge: float = 1e-6) -> tuple[np.ndarray, float]:
    """Maximum-likelihood Davidson (Bradley-Terry with ties) strengths from soft outcomes.

    Maximises sum_n w_n * [y_nA log P_A + y_nB log P_B + y_nT log P_T] with softmax logits
    [(t_a - t_b) / 2, (t_b - t_a) / 2, log nu] (modeling_arena.davidson_logits), by L-BFGS on the outcomes summed
    per ordered model pair, so its cost does not grow with the number of battles. A small ridge on t fixes the
    free offset (mean 0) and keeps a model that wins everything finite.
    Written here because no library found fits Davidson's ties to soft (probability) outcomes: choix and
    evalica fit Bradley-Terry without a tie parameter (evalica counts a tie as half a win), R's BradleyTerry2
    (GenDavidson) takes hard counts.

    Args:
        model_a, model_b: `(N,)` model indices.  outcomes: `(N, 3)` P(A), P(B), P(tie) (or one-hot votes).
        n_models: M.  weights: `(N,)` battle weights (bootstrap multiplicities), default 1.
    Returns:
        `(M,)` strengths t = log pi (mean ~0), and nu.
    """
    from scipy.optimize import minimize

    pair = model_a.astype(np.int64) * n_models + model_b
    weighted = outcomes if weights is None else outcomes * weights[:, None]
    totals = np.zeros((n_models * n_models, 3))
    np.add.at(totals, pair, weighted)
    used = np.flatnonzero(totals.sum(1) > 0)
    counts = totals[used]
    a, b = np.divmod(used, n_models)
    scale = float(counts.sum()) or 1.0

    def loss_and_grad(params: np.ndarray) -> tuple[float, np.ndarray]:
        theta, log_nu = params[:-1], params[-1]
        half = (theta[a] - theta[b]) / 2
        logits = np.stack([half, -half, np.full_like(half, log_nu)], axis=-1)
        log_probs = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
        loss = -(counts * log_probs).sum() / scale + ridge * theta @ theta
        # d loss / d logits = (total * p - counts) / scale, per pair
        d_logits = (counts.sum(1, keepdims=True) * np.exp(log_probs) - counts) / scale
        d_half = d_logits[:, 0] - d_logits[:, 1]
        grad_theta = np.bincount(a, d_half / 2, n_models) - np.bincount(b, d_half / 2, n_models) + 2 * ridge * theta
        return float(loss), np.append(grad_theta, d_logits[:, 2].sum())

    result = minimize(loss_and_grad, np.zeros(n_models + 1), jac=True, method="L-BFGS-B",
                      options={"maxiter": 1000, "ftol": 1e-15, "gtol": 1e-10})
    return result.x[:-1].copy(), float(np.exp(result.x[-1]))


def to_ratings(theta: np.ndarray, models: list[str], anchor: tuple[str, float] | None) -> np.ndarray:
    """Strengths -> the Arena's scale: 400 log10(pi), shifted so that the anchor model has its rating (or the mean is
    1000)."""
    ratings = ELO_SCALE * theta
    if anchor is None:
        return ratings - ratings.mean() + 1000.0
    name, value = anchor
    return ratings - ratings[models.index(name)] + value


def win_rates(theta: np.ndarray, nu: float) -> np.ndarray:
    """`(M, M)` expected score of row model against column model under the fitted Davidson model: P(win) +
    P(tie) / 2 (0.5 on the diagonal)."""
    gap = (theta[:, None] - theta[None, :]) / 2
    win, loss = np.exp(gap), np.exp(-gap)
    return (win + nu / 2) / (win + loss + nu)


def bootstrap_ratings(scored: ScoredBattles, outcomes: np.ndarray, rounds: int, seed: int,
                      anchor: tuple[str, float] | None) -> np.ndarray:
    """`(rounds, M)` ratings refitted on prompts drawn with replacement (every battle of a drawn prompt counts once
    per draw), seeded."""
    rng = np.random.default_rng(seed)
    n_groups = int(scored.group.max()) + 1
    samples = np.empty((rounds, len(scored.models)))
    for r in range(rounds):
        draws = np.bincount(rng.integers(0, n_groups, n_groups), minlength=n_groups).astype(np.float64)
        theta, _ = fit_davidson(scored.model_a, scored.model_b, outcomes, len(scored.models), draws[scored.group])
        samples[r] = to_ratings(theta, scored.models, anchor)
    return samples


def agreement(predicted: np.ndarray, human: np.ndarray, probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """How the predicted leaderboard agrees with the human one.

    Args:
        predicted, human: `(M,)` ratings.  probs: `(N, 3)` predicted probabilities.  labels: `(N,)` votes 0/1/2.
    Returns:
        kendall_tau (tau-b), spearman, pairwise_accuracy (share of model pairs ordered the same way; a pair tied in
        one leaderboard and not the other counts as disagreement), log_loss (mean -log P(vote) per battle).
    """
    from scipy.stats import kendalltau, spearmanr

    i, j = np.triu_indices(len(predicted), k=1)
    same = np.sign(predicted[i] - predicted[j]) == np.sign(human[i] - human[j])
    chosen = np.clip(probs[np.arange(len(labels)), labels], 1e-15, 1.0)
    return {"kendall_tau": float(kendalltau(predicted, human).statistic),
            "spearman": float(spearmanr(predicted, human).statistic),
            "pairwise_accuracy": float(same.mean()) if len(i) else float("nan"),
            "log_loss": float(-np.log(chosen).mean())}
