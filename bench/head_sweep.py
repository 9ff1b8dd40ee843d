"""How train.py's default head recipe (ArenaTrainingArguments' defaults) was chosen: a sweep of optimizer settings, each trained the
way train.py trains it (bench/quality.py's `fit_recipe`), scored by grouped K-fold CV on arena_dev.csv.

    python bench/head_sweep.py          # fold seed 1; writes bench/results/head_sweep.md

The folds are drawn with seed 1, not the seed 0 of the reported quality table, so that the table does not score
the recipe on the very folds it was picked on. Pooled towers come from the datasets cache that bench/quality.py
fills (train.py's default max_length and truncation); a fresh clone computes them first (about ten minutes).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT / "bench"))  # after the repo root: bench/leaderboard.py must not hide leaderboard.py

import quality  # noqa: E402
import recipe  # noqa: E402
from training_arguments import ArenaTrainingArguments, parse_args  # noqa: E402
from arena_dataset import load_arena, prompt_group, tokenize_arena  # noqa: E402
from pooled_towers import embed_towers  # noqa: E402

# (optim, learning rate, weight decay, epochs); batch 32 throughout. For adagrad and rmsprop, torch applies
# weight_decay as an L2 penalty in the gradient; AdamW decays the weights directly (decoupled).
SETTINGS = [
    ("adamw_torch", 3e-4, 0.0, 10), ("adamw_torch", 1e-3, 0.0, 3), ("adamw_torch", 3e-3, 0.0, 3),
    ("adamw_torch", 1e-3, 1.0, 10), ("adamw_torch", 3e-3, 1.0, 10),
    ("rmsprop", 1e-3, 0.02, 10), ("rmsprop", 3e-3, 0.02, 10),
    ("adagrad", 0.03, 0.02, 10), ("adagrad", 0.1, 0.01, 10), ("adagrad", 0.1, 0.02, 10), ("adagrad", 0.1, 0.05, 10),
    ("adagrad", 0.1, 0.02, 5), ("adagrad", 0.1, 0.02, 20), ("adagrad", 0.3, 0.02, 10),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "head_sweep.md"))
    args = parser.parse_args()

    started = time.time()
    metric = quality.study_setup()
    data = load_arena(str(quality.DEFAULT_DATA))
    y = np.asarray(data["label"])
    folds = quality.grouped_folds([prompt_group(p) for p in data["prompt"]], args.folds, args.seed)
    workdir = tempfile.mkdtemp(prefix="arena-head-sweep-")
    model, tokenizer = recipe.load_model_and_tokenizer(parse_args([*quality.QUIET, "--output_dir", workdir])[0])
    battles = embed_towers(tokenize_arena(data, tokenizer, model.config.max_length, model.config.truncation), model)
    default = tuple(getattr(ArenaTrainingArguments, k) for k in ("optim", "learning_rate", "weight_decay", "num_train_epochs"))

    lines = [
        f"Grouped {args.folds}-fold CV by prompt on {len(data)} votes (arena_dev.csv), fold seed {args.seed}; the "
        f"default classify head + style features on frozen embedded:minilm-l6 towers (max_length "
        f"{model.config.max_length}), batch 32, trained by train.py's Trainer.",
        "Command: `python bench/head_sweep.py`; wall time {wall}.",
        "",
        "| optim | learning rate | weight decay | epochs | log loss (mean ± std) | per fold |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for setting in SETTINGS:
        optim, lr, decay, epochs = setting
        options = ["--optim", optim, "--learning_rate", str(lr), "--weight_decay", str(decay), "--num_train_epochs",
                   str(epochs), "--per_device_train_batch_size", "32"]
        losses = []
        for fold, (train_rows, test_rows) in enumerate(folds):
            fitted = quality.fit_recipe(options, battles.select(train_rows), args.seed + fold, workdir)
            probs = quality.predict_probs(fitted, battles.select(test_rows), swap_tta=False)
            losses.append(quality.score(metric, probs, y[test_rows])["log_loss"])
        mark = " (train.py default)" if setting == default else ""
        lines.append(f"| {optim}{mark} | {lr:g} | {decay:g} | {epochs} | {np.mean(losses):.4f} ± {np.std(losses):.4f} "
                     f"| {' '.join(f'{v:.3f}' for v in losses)} |")
        print(lines[-1], flush=True)
    lines[1] = lines[1].format(wall=f"{(time.time() - started) / 60:.1f} min on this machine")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
