"""The quality study's code paths on a small slice (the full study is a benchmark: bench/quality.py)."""

import sys

import numpy as np
import pytest

from conftest import ROOT, SAMPLE_DATA, SHARED_DATA

sys.path.insert(0, str(ROOT / "bench"))
import quality  # noqa: E402
from encoding_arena import STYLE_FEATURES  # noqa: E402


@pytest.fixture()
def slice_features():
    """60 pooled battles of a 32-wide encoder (embedded:tiny-deberta's): the label follows the first style
    feature's gap, so a working baseline or head must beat the prior."""
    from datasets import Dataset

    rng = np.random.default_rng(0)
    n, hidden = 60, 32
    width = len(STYLE_FEATURES)
    style_a, style_b = (rng.normal(size=(n, width)).astype(np.float32) for _ in range(2))
    gap = style_a[:, 0] - style_b[:, 0]
    y = np.where(gap > 0.5, 0, np.where(gap < -0.5, 1, 2))
    battles = Dataset.from_dict({"pooled_a": rng.normal(size=(n, hidden)).astype(np.float32),
                                 "pooled_b": rng.normal(size=(n, hidden)).astype(np.float32),
                                 "style_a": style_a, "style_b": style_b, "label": y})
    return battles, y


def test_grouped_folds_never_split_a_prompt():
    groups = [f"prompt {i % 7}" for i in range(40)]
    folds = quality.grouped_folds(groups, 4, seed=0)
    assert sorted(np.concatenate([test for _, test in folds]).tolist()) == list(range(40))
    for train, test in folds:
        assert not {groups[i] for i in train} & {groups[i] for i in test}


def test_length_baseline_beats_the_prior_when_length_decides(slice_features):
    battles, y = slice_features
    train, test = np.arange(40), np.arange(40, 60)
    style_a, style_b = np.asarray(battles["style_a"]), np.asarray(battles["style_b"])
    probs = quality.length_baseline(style_a, style_b, train, test, y)
    prior = np.bincount(y[train], minlength=3) / len(train)
    log_loss = lambda p: -np.log(p[np.arange(len(test)), y[test]]).mean()  # noqa: E731
    assert probs.shape == (20, 3) and np.allclose(probs.sum(1), 1)
    assert log_loss(probs) < log_loss(np.tile(prior, (20, 1))) - 0.1


@pytest.mark.parametrize("head", ["classify", "rank"])
def test_fit_recipe_trains_through_train_py_and_swap_tta_is_symmetric(slice_features, tmp_path, head):
    battles, y = slice_features
    options = ["--model_name_or_path", "embedded:tiny-deberta", "--head", head, "--swap_augment",
               "--num_train_epochs", "30", "--learning_rate", "3e-2"]
    model = quality.fit_recipe(options, battles, seed=0, workdir=str(tmp_path))
    assert model.config.head == head and not model.training
    assert not any(p.requires_grad for p in model.encoder.parameters())  # train.py's default: frozen encoder
    probs = quality.predict_probs(model, battles, swap_tta=True)
    swapped = battles.rename_columns({"pooled_a": "pooled_b", "pooled_b": "pooled_a", "style_a": "style_b",
                                      "style_b": "style_a"})
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    assert np.allclose(quality.predict_probs(model, swapped, swap_tta=True), probs[:, [1, 0, 2]], atol=1e-6)
    assert (probs.argmax(1) == y).mean() > 0.6


def test_without_feature_zeroes_one_column_on_both_sides(slice_features):
    battles, _ = slice_features
    column = STYLE_FEATURES.index("log_paragraphs")
    ablated = quality.without_feature(battles, "log_paragraphs")
    for side in ("style_a", "style_b"):
        before, after = np.asarray(battles[side]), np.asarray(ablated[side])
        assert (after[:, column] == 0).all() and (before[:, column] != 0).all()
        assert np.array_equal(np.delete(after, column, 1), np.delete(before, column, 1))


def test_metric_module_scores_a_perfect_and_a_uniform_prediction():
    import evaluate

    metric = evaluate.load(str(quality.METRIC_PATH), keep_in_memory=True)
    y = np.array([0, 1, 2, 1])
    uniform = quality.score(metric, np.full((4, 3), 1 / 3), y)
    assert uniform["log_loss"] == pytest.approx(np.log(3))
    assert quality.score(metric, np.eye(3)[y], y)["f1_tie"] == pytest.approx(1.0)


# The real dev file where ../shared/data has it (CI), else the synthetic sample the repo carries (tests/data).
DEV_FILE = SHARED_DATA / "arena_dev.csv" if (SHARED_DATA / "arena_dev.csv").exists() else SAMPLE_DATA


def test_baselines_on_a_data_slice():
    from arena_dataset import load_arena, prompt_group
    from encoding_arena import style_features

    data = load_arena(str(DEV_FILE))
    data = data.select(range(min(600, len(data))))
    y = np.asarray(data["label"])
    sa = np.array([style_features(t) for t in data["response_a"]])
    sb = np.array([style_features(t) for t in data["response_b"]])
    folds = quality.grouped_folds([prompt_group(p) for p in data["prompt"]], 3, seed=0)
    for train, test in folds:
        probs = quality.length_baseline(sa, sb, train, test, y)
        assert probs.shape == (len(test), 3) and np.isfinite(probs).all()
