"""ratings: the Davidson fit, the Arena scale, win rates and agreement, on arrays (no model, no files)."""

import numpy as np
import pytest

from arena_preference import ratings


def davidson(theta, nu, a, b):
    """`(N, 3)` exact Davidson probabilities of battles a[n] vs b[n] for strengths theta and tie parameter nu."""
    half = (theta[a] - theta[b]) / 2
    w = np.stack([np.exp(half), np.exp(-half), np.full_like(half, nu)], axis=1)
    return w / w.sum(1, keepdims=True)


def test_fit_recovers_known_ratings_from_exact_probabilities():
    theta, nu = np.array([0.9, 0.2, -0.4, -0.7]), 0.6
    a, b = (x.ravel() for x in np.meshgrid(range(4), range(4), indexing="ij"))
    keep = a != b
    a, b = a[keep], b[keep]
    fitted, fitted_nu = ratings.fit_davidson(a, b, davidson(theta, nu, a, b), 4)
    np.testing.assert_allclose(fitted, theta - theta.mean(), atol=1e-3)
    assert fitted_nu == pytest.approx(nu, abs=1e-3)
    rates = ratings.win_rates(fitted, fitted_nu)
    np.testing.assert_allclose(rates + rates.T, 1.0)  # expected scores of a pair add up to one
    assert rates[0, 3] > rates[0, 1] > 0.5


def test_the_fit_is_the_maximum_of_the_likelihood_and_respects_weights():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, 300), rng.integers(0, 5, 300)
    keep = a != b
    a, b = a[keep], b[keep]
    outcomes = rng.dirichlet(np.ones(3), len(a))
    theta, nu = ratings.fit_davidson(a, b, outcomes, 5, ridge=0.0)

    def nll(params):
        p = davidson(params[:-1], np.exp(params[-1]), a, b)
        return -(outcomes * np.log(p)).sum()

    best = np.append(theta, np.log(nu))
    assert np.abs(_numeric_grad(nll, best)).max() < 1e-3 * len(a)  # a stationary point
    for step in (np.eye(6)[0] * 0.05, np.eye(6)[5] * 0.05):
        assert nll(best + step) > nll(best) and nll(best - step) > nll(best)
    # integer weights = repeated battles
    weights = rng.integers(1, 4, len(a)).astype(float)
    repeated = np.repeat(np.arange(len(a)), weights.astype(int))
    weighted = ratings.fit_davidson(a, b, outcomes, 5, weights=weights)
    expanded = ratings.fit_davidson(a[repeated], b[repeated], outcomes[repeated], 5)
    np.testing.assert_allclose(weighted[0], expanded[0], atol=1e-5)
    assert weighted[1] == pytest.approx(expanded[1], abs=1e-5)


def _numeric_grad(f, x, eps=1e-6):
    return np.array([(f(x + eps * e) - f(x - eps * e)) / (2 * eps) for e in np.eye(len(x))])


def test_agreement_on_a_hand_made_case():
    # predicted order alpha > beta > gamma; human order alpha > gamma > beta: one of three pairs swapped
    predicted, human = np.array([1100.0, 1000.0, 900.0]), np.array([1100.0, 900.0, 1000.0])
    probs = np.array([[0.5, 0.25, 0.25], [0.25, 0.5, 0.25]])
    result = ratings.agreement(predicted, human, probs, np.array([0, 1]))
    assert result["kendall_tau"] == pytest.approx(1 / 3)
    assert result["spearman"] == pytest.approx(0.5)
    assert result["pairwise_accuracy"] == pytest.approx(2 / 3)
    assert result["log_loss"] == pytest.approx(np.log(2))


def test_ratings_are_on_the_arena_scale():
    theta = np.array([0.5, 0.0, -0.5])
    mean_anchored = ratings.to_ratings(theta, ["x", "y", "z"], None)
    assert mean_anchored.mean() == pytest.approx(1000)
    assert mean_anchored[0] - mean_anchored[1] == pytest.approx(400 * 0.5 / np.log(10))
    assert ratings.to_ratings(theta, ["x", "y", "z"], ("y", 1200.0))[1] == pytest.approx(1200)
