"""The quality study's protocol on small synthetic slices (the full study is a benchmark: bench/quality.py)."""

import argparse
import sys

import numpy as np
import pytest

from conftest import ROOT

sys.path.append(str(ROOT / "bench"))  # after the repo root: bench/leaderboard.py must not hide leaderboard.py
import quality  # noqa: E402
from encoding_arena import STYLE_FEATURES  # noqa: E402


def _battles(n=120, hidden=16, seed=0, skew=0.0):
    """Synthetic pooled battles: the label follows the length gap (and, with `skew`, leans to B)."""
    rng = np.random.default_rng(seed)
    layers = [rng.normal(size=(n, 7, hidden)).astype(np.float32) for _ in range(2)]
    vectors = [rng.normal(size=(n, hidden)).astype(np.float32) for _ in range(4)]
    chars = rng.integers(1, 2000, size=(2, n))
    style = [np.zeros((n, len(STYLE_FEATURES)), np.float32) for _ in range(2)]
    for side in range(2):
        style[side][:, 0] = np.log1p(chars[side])
        style[side][:, 1] = np.log1p(chars[side] // 5)
    gap = np.log(chars[0] / chars[1]) - skew
    y = np.where(gap > 0.7, 0, np.where(gap < -0.7, 1, 2))
    battles = quality.Battles(layers[0], layers[1], *vectors, style[0], style[1], style[0][:, :9], style[1][:, :9], y)
    battles.meta = {"source": np.repeat([1, 2, 3, 4], n // 4), "group": [f"prompt {i // 2}" for i in range(n)]}
    return battles


def test_grouped_folds_never_split_a_prompt():
    groups = [f"prompt {i % 7}" for i in range(40)]
    folds = quality.grouped_folds(groups, 4, seed=0)
    assert sorted(np.concatenate([test for _, test in folds]).tolist()) == list(range(40))
    for train, test in folds:
        assert not {groups[i] for i in train} & {groups[i] for i in test}


def test_swapped_battles_exchange_sides_and_mirror_labels():
    battles = _battles()
    swapped = battles.swapped()
    assert np.array_equal(swapped.style_a, battles.style_b) and np.array_equal(swapped.layers_b, battles.layers_a)
    assert np.array_equal(swapped.y, np.array([1, 0, 2])[battles.y])
    assert np.array_equal(swapped.swapped().y, battles.y)


def test_symmetric_recipes_score_the_same_in_both_orders():
    battles = _battles(skew=1.0)
    train, test = battles.take(np.arange(80)), battles.take(np.arange(80, 120))
    for name in ("symmetric class prior", "length LR (swap-aug, swap-avg)", quality.DEFAULT_NEW, quality.REFERENCE):
        pred = quality.predict(name, train, test, seed=0, extra=None)
        own, swapped = quality.row_losses(pred, test.y)
        assert np.allclose(pred.probs.sum(1), 1, atol=1e-5)
        assert own.mean() == pytest.approx(swapped.mean(), abs=1e-5), name
    # the position-aware head without TTA learns the skew: it gains in one order and pays in the other
    pred = quality.predict("today's default (own order only)", train, test, seed=0, extra=None)
    own, swapped = quality.row_losses(pred, test.y)
    assert swapped.mean() > own.mean() + 0.01


def test_the_new_default_learns_the_length_rule_and_gives_content_probabilities():
    battles = _battles(n=240)
    train, test = battles.take(np.arange(160)), battles.take(np.arange(160, 240))
    pred = quality.predict(quality.DEFAULT_NEW, train, test, seed=0, extra=None)
    prior = quality.predict("symmetric class prior", train, test, seed=0, extra=None)
    assert quality.row_losses(pred, test.y)[0].mean() < quality.row_losses(prior, test.y)[0].mean() - 0.05
    assert pred.content is not None and pred.content.shape == (80, 3)


def test_leave_one_source_out_drops_training_battles_on_a_held_out_prompt():
    battles = _battles()
    battles.meta["group"][0] = battles.meta["group"][-1]  # a source-1 battle shares a source-4 prompt
    train, test = quality.leave_one_source_out(battles, 4)
    assert set(battles.meta["source"][test]) == {4} and 0 not in train
    assert set(battles.meta["source"][train]) == {1, 2, 3}


def test_legacy_style_features_are_todays_nine():
    text = "# Title\n\nSome **bold** text.\n \n- one\n- two\n\n```\ncode\n```"
    legacy = quality.legacy_style_features([text])
    assert len(legacy) == 9 and legacy[-1] == 0.0
    assert [round(np.expm1(v)) for v in legacy[3:8]] == [3, 1, 2, 1, 1]


def test_report_renders_and_names_its_command(tmp_path):
    battles = _battles()
    names = [*quality.BASELINES, quality.REFERENCE, quality.DEFAULT_NEW]
    cv = quality.run_cv(battles, None, names, folds=2, seed=0)
    loso = quality.run_loso(battles, None, [*quality.BASELINES, quality.DEFAULT_NEW], seed=0)
    args = {"data": "x.csv", "extra": "", "folds": 2, "seed": 0, "recipes": None, "name": "quality"}
    report = quality.summarise(battles, cv, loso, argparse.Namespace(**args), 1.0, 0.5)
    quality.write_report(report, tmp_path, "quality")
    text = (tmp_path / "quality.md").read_text()
    assert "python bench/quality.py --folds 2 --seed 0 --extra ''" in text
    assert "position-neutral" in text and "Leave one source out" in text and "disagree" in text
