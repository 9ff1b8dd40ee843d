"""Temperature scaling (calibration.py) and train.py --calibrate."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from arena_preference.scoring import MAX_TEMPERATURE, MIN_TEMPERATURE, fit_temperature

sys.path.insert(0, str(Path(__file__).resolve().parent))


def sampled(n: int = 4000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels drawn from softmax(logits): the calibrated temperature is 1."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, 3, generator=generator) * 1.5
    labels = torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(1)
    return logits, labels


@pytest.mark.parametrize("scale", [0.5, 1.0, 3.0])
def test_fit_temperature_undoes_a_known_over_or_under_confidence(scale):
    logits, labels = sampled()
    assert fit_temperature(logits * scale, labels) == pytest.approx(scale, rel=0.08)


def test_the_fitted_temperature_minimises_the_log_loss_and_soft_labels_work():
    logits, labels = sampled()
    logits = logits * 2.0
    t = fit_temperature(logits, labels)
    loss = lambda temp: torch.nn.functional.cross_entropy(logits / temp, labels).item()  # noqa: E731
    assert loss(t) <= min(loss(t * 0.9), loss(t * 1.1), loss(1.0))
    soft = torch.nn.functional.one_hot(labels, 3).double()
    assert fit_temperature(logits, soft) == pytest.approx(t, rel=1e-4)


def test_fit_temperature_stays_in_bounds_and_rejects_bad_shapes():
    logits, labels = sampled(200)
    # labels that contradict the logits: the best temperature is as flat as allowed
    assert fit_temperature(logits, (logits.argmin(-1))) == pytest.approx(MAX_TEMPERATURE, rel=1e-3)
    # labels that always agree with confident logits: as sharp as allowed
    assert fit_temperature(logits * 1e-3, logits.argmax(-1)) == pytest.approx(MIN_TEMPERATURE, rel=1e-3)
    with pytest.raises(ValueError, match="expected"):
        fit_temperature(logits[:0], labels[:0])
    with pytest.raises(ValueError, match="expected"):
        fit_temperature(logits, labels[:10])


def test_train_calibrate_stores_the_temperature_that_the_saved_model_applies(tmp_path):
    from arena_preference import train
    from test_train import TINY, battle

    from arena_preference.model_loading import load_model

    rows = [battle(i) for i in range(32)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:24]))
    (tmp_path / "validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[24:]))
    out = tmp_path / "out"
    result = train.main([*TINY, "--train_file", str(tmp_path / "train.jsonl"), "--validation_file",
                         str(tmp_path / "validation.jsonl"), "--output_dir", str(out), "--max_steps", "3",
                         "--eval_strategy", "no", "--save_strategy", "no", "--learning_rate", "1e-3", "--calibrate"])
    saved = json.loads((out / "config.json").read_text())
    eval_results = json.loads((out / "eval_results.json").read_text())
    assert saved["temperature"] == pytest.approx(eval_results["temperature"]) and saved["temperature"] != 1.0
    assert eval_results["eval_log_loss_calibrated"] <= eval_results["eval_log_loss"] + 1e-9

    # The saved model divides by the temperature: its log loss on the validation battles is the calibrated one.
    from arena_dataset import load_arena
    from pipeline_arena import ArenaPreferencePipeline

    model, tokenizer = load_model(str(out))
    validation = load_arena(str(tmp_path / "validation.jsonl"))
    judge = ArenaPreferencePipeline(model=model, tokenizer=tokenizer)
    probs = judge(list(validation), batch_size=4)
    keys = ("winner_model_a", "winner_model_b", "winner_tie")
    loss = -sum(math.log(p[keys[y]]) for p, y in zip(probs, validation["label"])) / len(validation)
    assert loss == pytest.approx(eval_results["eval_log_loss_calibrated"], abs=1e-4)
    assert result["metrics"]["eval_log_loss_calibrated"] == eval_results["eval_log_loss_calibrated"]
