"""leaderboard.py: the Davidson fit, anchoring, bootstrap, agreement, the score cache, bad rows, both input forms
(function API and CLI) and the two-process path, on a tiny saved model (embedded:tiny-deberta)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT

from arena_preference import leaderboard as lb

# What "auto" resolves to changes these results (see PRECISION_TOLERANCE in conftest.py).
pytestmark = pytest.mark.precision_sensitive

MODELS = ("alpha", "beta", "gamma")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A saved tiny arena model whose classifier is far from uniform, so that ratings differ."""
    import torch

    from arena_preference.model_loading import load_model

    folder = tmp_path_factory.mktemp("tiny-arena")
    model, tokenizer = load_model("embedded:tiny-deberta", max_length=64)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # every head weight (whatever the head's layout), not the encoder
        for name, weight in model.named_parameters():
            if not name.startswith("encoder.") and weight.ndim == 2:
                weight.normal_(std=1.0, generator=generator)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def _answer(model: str, prompt: int) -> str:
    return " ".join(["word"] * (1 + 3 * MODELS.index(model) + prompt % 2) if model in MODELS else ["new"] * 9)


def write_responses(path: Path, models=MODELS, prompts: int = 4) -> Path:
    """JSONL, one row per (prompt, model); prompt 0 is multi-turn (lists of turns)."""
    with open(path, "w") as handle:
        for p in range(prompts):
            for m in models:
                prompt, answer = f"Question {p}?", _answer(m, p)
                if p == 0:
                    prompt, answer = [prompt, "And then?"], [answer, "then " + answer]
                handle.write(json.dumps({"prompt_id": f"q{p}", "prompt": prompt, "model": m, "response": answer})
                             + "\n")
    return path


def write_battles(path: Path) -> Path:
    """Kaggle layout with model names and one-hot labels: alpha wins most, gamma loses most."""
    rows, n = [], 0
    for p in range(6):
        for a, b, label in [("alpha", "beta", 0), ("beta", "gamma", 0), ("gamma", "alpha", 1 if p % 3 else 2)]:
            rows.append({"id": n, "model_a": a, "model_b": b, "prompt": json.dumps([f"Question {p}?"]),
                         "response_a": json.dumps([_answer(a, p)]), "response_b": json.dumps([_answer(b, p)]),
                         **{k: int(i == label) for i, k in enumerate(lb.LABELS)}})
            n += 1
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


# ------------------------------------------------------------------------------------------------------------ fit
from test_ratings import davidson as _davidson  # noqa: E402


def _scored(seed: int = 0, n_groups: int = 40, exact: bool = False) -> lb.ScoredBattles:
    """Battles of 3 models on n_groups prompts, votes drawn from known strengths; predicted probabilities half the
    exact ones and half the vote (so that they vary over prompts), or the exact ones."""
    rng = np.random.default_rng(seed)
    theta = np.array([0.8, 0.0, -0.8])
    a, b, g = [], [], []
    for group in range(n_groups):
        for i, j in [(0, 1), (1, 2), (0, 2)]:
            a.append(i), b.append(j), g.append(group)
    a, b = np.array(a), np.array(b)
    probs = _davidson(theta, 0.5, a, b)
    labels = np.array([rng.choice(3, p=p) for p in probs])
    predicted = probs if exact else (probs + np.eye(3)[labels]) / 2
    return lb.ScoredBattles(list(MODELS), a, b, np.array(g), predicted, None, labels)


def test_anchor_pins_one_model_or_the_mean():
    scored = _scored(exact=True)
    board = lb.rate(scored, bootstrap=0, anchor="beta=1200")
    ratings = {r["model"]: r["rating"] for r in board["models"]}
    assert ratings["beta"] == pytest.approx(1200)
    assert [r["model"] for r in board["models"]] == ["alpha", "beta", "gamma"]
    mean = lb.rate(scored, bootstrap=0)
    assert np.mean([r["rating"] for r in mean["models"]]) == pytest.approx(1000)
    gaps = {r["model"]: r["rating"] for r in mean["models"]}
    assert gaps["alpha"] - gaps["beta"] == pytest.approx(ratings["alpha"] - ratings["beta"])
    assert ratings["alpha"] - ratings["beta"] == pytest.approx(lb.ELO_SCALE * 0.8, rel=1e-3)
    with pytest.raises(ValueError, match="MODEL=RATING"):
        lb.parse_anchor("beta")
    with pytest.raises(ValueError, match="no model 'delta'"):
        lb.rate(scored, bootstrap=0, anchor="delta=1000")


def test_bootstrap_is_seeded_and_intervals_contain_the_estimate():
    scored = _scored()
    first, again, other = (lb.rate(scored, bootstrap=30, seed=s) for s in (1, 1, 2))
    assert first["models"] == again["models"]
    assert first["models"] != other["models"]
    for row in first["models"]:
        assert row["ci_low"] < row["rating"] < row["ci_high"]


def test_rate_fits_the_human_votes_and_reports_agreement():
    # hard votes through rate(): human_rating per model and an agreement block
    board = lb.rate(_scored(), bootstrap=0)
    assert {"kendall_tau", "spearman", "pairwise_accuracy", "log_loss"} == set(board["agreement"])
    assert all("human_rating" in row for row in board["models"])


# ------------------------------------------------------------------------------------------- end to end, cached
def test_responses_function_api_and_cache(model_dir, tmp_path):
    responses = write_responses(tmp_path / "answers.jsonl")
    options = {"cache_dir": str(tmp_path / "cache"), "bootstrap": 5, "output_dir": str(tmp_path / "board")}
    board = lb.leaderboard(model_dir, responses=str(responses), **options)
    info = board["produced_by"]
    assert (info["n_battles"], info["n_prompts"], info["n_models"], info["scored_now"]) == (12, 4, 3, 12)
    assert info["model_fingerprint"] == lb.model_fingerprint(model_dir)
    for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.json", "battles.csv", "ratings.png",
                 "win_rates.png"):
        assert (tmp_path / "board" / name).stat().st_size > 0
    assert json.loads((tmp_path / "board" / "leaderboard.json").read_text())["models"] == board["models"]
    row = board["models"][0]
    assert set(row) == {"model", "rating", "ci_low", "ci_high", "battles", "style_controlled_rating"}
    assert "agreement" not in board  # no labels
    styled = [r["style_controlled_rating"] for r in board["models"]]
    if board["style_controlled_rating_note"] is None:  # the pipeline gives style-controlled probabilities
        assert all(isinstance(r, float) for r in styled)
    else:
        assert styled == [None] * 3

    again = lb.leaderboard(model_dir, responses=str(responses), **options)
    assert again["produced_by"]["scored_now"] == 0
    assert again["models"] == board["models"]

    more = write_responses(tmp_path / "more.jsonl", models=(*MODELS, "delta"))
    added = lb.leaderboard(model_dir, responses=str(more), **options)
    assert added["produced_by"]["scored_now"] == 4 * 3  # delta against each of 3 models on 4 prompts
    assert added["produced_by"]["n_battles"] == 24


class _Judge:
    """A stand-in pipeline: with or without the style_control option, with or without the result key."""

    def __init__(self, option: bool, returns: bool):
        self.returns = returns
        if option:
            self._sanitize_parameters = lambda swap_tta=None, style_control=None: ({}, {}, {})
        else:
            self._sanitize_parameters = lambda swap_tta=None: ({}, {}, {})

    def __call__(self, battle, style_control=False):
        return {"style_controlled": dict.fromkeys(lb.LABELS, 1 / 3)} if self.returns else {}


def test_style_control_is_detected_not_assumed():
    battle = {"prompt": "Hi", "response_a": "a", "response_b": "b"}
    assert "no style_control option" in lb.style_control_reason(_Judge(False, False), battle)
    assert "returned no style_controlled" in lb.style_control_reason(_Judge(True, False), battle)
    assert lb.style_control_reason(_Judge(True, True), battle) is None
    scored = _scored()
    scored.style_probs = scored.probs[:, [1, 0, 2]]  # style-controlled view: the order reversed
    board = lb.rate(scored, bootstrap=0)
    assert board["style_controlled_rating_note"] is None
    assert [r["model"] for r in sorted(board["models"], key=lambda r: r["style_controlled_rating"])] == list(MODELS)
    absent = lb.rate(_scored(), bootstrap=0, style_reason="no reason given")
    assert absent["style_controlled_rating_note"] == "no reason given"
    assert all(r["style_controlled_rating"] is None for r in absent["models"])
    # with votes, the style-controlled leaderboard gets its own agreement: reversed, it disagrees on every pair
    assert board["agreement_style_controlled"]["pairwise_accuracy"] == 1 - board["agreement"]["pairwise_accuracy"]
    assert board["agreement_style_controlled"]["kendall_tau"] == pytest.approx(-board["agreement"]["kendall_tau"])
    assert "agreement_style_controlled" not in absent


def test_max_pairs_per_prompt_samples_with_the_seed(tmp_path):
    rows = lb.load_responses(str(write_responses(tmp_path / "answers.jsonl", models=(*MODELS, "delta"))))
    take = [[(b["model_a"], b["model_b"]) for b in lb.battles_from_responses(rows, "x", max_pairs=2, seed=s)]
            for s in (0, 0, 1)]
    assert len(take[0]) == 4 * 2 and take[0] == take[1] and take[0] != take[2]


def test_fingerprint_changes_when_weights_change(model_dir, tmp_path):
    import torch

    from arena_preference.model_loading import load_model

    model, tokenizer = load_model(model_dir)
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] += 1e-3
    model.save_pretrained(tmp_path / "changed")
    assert lb.model_fingerprint(str(tmp_path / "changed")) != lb.model_fingerprint(model_dir)


def test_labelled_battles_through_the_cli(model_dir, tmp_path, capsys):
    battles = write_battles(tmp_path / "battles.csv")
    board = lb.main(["--model_name_or_path", model_dir, "--battles", str(battles), "--output_dir",
                     str(tmp_path / "board"), "--bootstrap", "5", "--cache_dir", "none", "--anchor", "beta=1000"])
    assert "Agreement with the human votes" in capsys.readouterr().out
    humans = {r["model"]: r["human_rating"] for r in board["models"]}
    assert humans["beta"] == pytest.approx(1000) and humans["alpha"] > humans["beta"] > humans["gamma"]
    assert set(board["agreement"]) == {"kendall_tau", "spearman", "pairwise_accuracy", "log_loss"}
    assert board["produced_by"]["n_battles"] == 18 and board["produced_by"]["from_cache"] == 0


# ------------------------------------------------------------------------------------------------------- bad rows
def test_bad_responses_rows_name_file_line_and_field(tmp_path):
    path = tmp_path / "answers.jsonl"
    path.write_text('{"prompt": "Hi", "model": "a", "response": "Hello"}\n'
                    '{"prompt": "Hi", "model": "", "response": "Hey"}\n')
    with pytest.raises(ValueError, match=r"answers.jsonl, line 2, field 'model'"):
        lb.load_responses(str(path))
    path.write_text('{"prompt": ["Hi", "More"], "model": "a", "response": ["Hello"]}\n')
    with pytest.raises(ValueError, match=r"line 1, field 'response': expected 2 turn"):
        lb.load_responses(str(path))
    path.write_text('{"prompt": "Hi", "model": "a", "response": "x"}\n{"prompt": "Hi", "model": "a", '
                    '"response": "y"}\n')
    with pytest.raises(ValueError, match=r"line 2, field 'model': 'a' answered this prompt already at line 1"):
        list(lb.battles_from_responses(lb.load_responses(str(path)), str(path)))
    path.write_text('{"prompt": "Hi", "response": "x"}\n')
    with pytest.raises(ValueError, match=r"missing column\(s\) \['model'\]"):
        lb.load_responses(str(path))


def test_bad_battles_rows_get_the_loaders_errors(model_dir, tmp_path, capsys):
    path = tmp_path / "battles.csv"
    path.write_text('id,model_a,model_b,prompt,response_a,response_b\n7,a,b,"[""Hi""]","[""x""]","[""y""]"\n'
                    '8,a,,"[""Hi""]","[""x""]","[""y""]"\n')
    with pytest.raises(ValueError, match=r"battles.csv, id 8, field 'model_b': no model name"):
        lb.load_battles(str(path))
    path.write_text('id,model_a,model_b,prompt,response_a,response_b\n7,a,b,"[""Hi""]","[""x""","[""y""]"\n')
    with pytest.raises(SystemExit) as exit_info:
        lb.main(["--model_name_or_path", model_dir, "--battles", str(path), "--output_dir", str(tmp_path / "o")])
    assert exit_info.value.code == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]  # progress bars may come before it
    assert last.startswith("leaderboard.py: error:") and "line 2" in last and "response_a" in last


# ------------------------------------------------------------------------------------------------- two processes
def test_two_processes_give_the_same_leaderboard_as_one(model_dir, tmp_path):
    responses = write_responses(tmp_path / "answers.jsonl", models=(*MODELS, "delta"), prompts=3)
    options = ["--model_name_or_path", model_dir, "--responses", str(responses), "--bootstrap", "10",
               "--cache_dir", "none", "--chunk_size", "7", "--batch_size", "2"]
    one = lb.main([*options, "--output_dir", str(tmp_path / "one")])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    torchrun = Path(sys.executable).with_name("torchrun")
    result = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", str(ROOT / "leaderboard.py"),
                             *options, "--output_dir", str(tmp_path / "two")], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    two = json.loads((tmp_path / "two" / "leaderboard.json").read_text())
    assert two["produced_by"]["num_processes"] == 2 and one["produced_by"]["num_processes"] == 1
    assert two["produced_by"]["n_battles"] == one["produced_by"]["n_battles"] == 18
    # every battle once, in input order, with the same probabilities (batches may pad differently: atol)
    rows = [list(csv.reader(open(tmp_path / d / "battles.csv"))) for d in ("one", "two")]
    assert len(rows[0]) == len(rows[1]) == 19
    for first, second in zip(*rows):
        assert first[:4] == second[:4]
        if first[0] != "id":
            np.testing.assert_allclose(np.array(first[4:7], float), np.array(second[4:7], float), atol=2e-6)
    for a, b in zip(one["models"], two["models"]):
        assert a["model"] == b["model"] and a["battles"] == b["battles"]
        for key in ("rating", "ci_low", "ci_high"):
            assert a[key] == pytest.approx(b[key], abs=1e-3)
