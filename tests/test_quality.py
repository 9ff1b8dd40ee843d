"""The quality study's code paths on a small slice (the full study is a benchmark: bench/quality.py)."""

import sys

import numpy as np
import pytest
import torch

from conftest import ROOT, SHARED_DATA

sys.path.insert(0, str(ROOT / "bench"))
import quality  # noqa: E402
from encoding_arena import STYLE_FEATURES  # noqa: E402


@pytest.fixture()
def slice_features():
    rng = np.random.default_rng(0)
    n, hidden = 60, 32
    width = len(STYLE_FEATURES)
    style_a, style_b = (rng.normal(size=(n, width)).astype(np.float32) for _ in range(2))
    # the label follows the length gap, so a working baseline must beat the prior
    gap = style_a[:, 0] - style_b[:, 0]
    y = np.where(gap > 0.5, 0, np.where(gap < -0.5, 1, 2))
    feats = {"pooled_a": torch.from_numpy(rng.normal(size=(n, hidden)).astype(np.float32)),
             "pooled_b": torch.from_numpy(rng.normal(size=(n, hidden)).astype(np.float32)),
             "style_a": torch.from_numpy(style_a), "style_b": torch.from_numpy(style_b)}
    return feats, y


def test_grouped_folds_never_split_a_prompt():
    groups = [f"prompt {i % 7}" for i in range(40)]
    folds = quality.grouped_folds(groups, 4, seed=0)
    assert sorted(np.concatenate([test for _, test in folds]).tolist()) == list(range(40))
    for train, test in folds:
        assert not {groups[i] for i in train} & {groups[i] for i in test}


def test_length_baseline_beats_the_prior_when_length_decides(slice_features):
    feats, y = slice_features
    train, test = np.arange(40), np.arange(40, 60)
    probs = quality.length_baseline(feats["style_a"].numpy(), feats["style_b"].numpy(), train, test, y)
    prior = np.bincount(y[train], minlength=3) / len(train)
    log_loss = lambda p: -np.log(p[np.arange(len(test)), y[test]]).mean()  # noqa: E731
    assert probs.shape == (20, 3) and np.allclose(probs.sum(1), 1)
    assert log_loss(probs) < log_loss(np.tile(prior, (20, 1))) - 0.1


@pytest.mark.parametrize("head", ["classify", "rank"])
def test_fit_head_learns_and_swap_tta_is_symmetric(slice_features, tiny_model, head):
    feats, y = slice_features
    model = quality.fit_head(feats, torch.from_numpy(y), tiny_model.config.encoder_config, head, style=True,
                             swap_augment=True, seed=0, steps=100)
    probs = quality.head_probs(model, feats, swap_tta=True)
    swapped = {"pooled_a": feats["pooled_b"], "pooled_b": feats["pooled_a"],
               "style_a": feats["style_b"], "style_b": feats["style_a"]}
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    assert np.allclose(quality.head_probs(model, swapped, swap_tta=True), probs[:, [1, 0, 2]], atol=1e-6)
    assert (probs.argmax(1) == y).mean() > 0.6


def test_metric_module_scores_a_perfect_and_a_uniform_prediction():
    import evaluate

    metric = evaluate.load(str(quality.METRIC_PATH), keep_in_memory=True)
    y = np.array([0, 1, 2, 1])
    uniform = quality.score(metric, np.full((4, 3), 1 / 3), y)
    assert uniform["log_loss"] == pytest.approx(np.log(3))
    assert quality.score(metric, np.eye(3)[y], y)["f1_tie"] == pytest.approx(1.0)


@pytest.mark.skipif(not SHARED_DATA.joinpath("arena_dev.csv").exists(), reason="../shared/data is not present")
def test_baselines_on_a_real_slice():
    from arena_dataset import load_arena, prompt_group
    from encoding_arena import style_features

    data = load_arena(str(SHARED_DATA / "arena_dev.csv")).select(range(600))
    y = np.asarray(data["label"])
    sa = np.array([style_features(t) for t in data["response_a"]])
    sb = np.array([style_features(t) for t in data["response_b"]])
    folds = quality.grouped_folds([prompt_group(p) for p in data["prompt"]], 3, seed=0)
    for train, test in folds:
        probs = quality.length_baseline(sa, sb, train, test, y)
        assert probs.shape == (len(test), 3) and np.isfinite(probs).all()
