"""How train.py's default head recipe (ArenaTrainingArguments' defaults) was chosen: a sweep of optimizer settings, each trained the
way train.py trains it (its option parsing, model and Trainer), scored by grouped K-fold CV on arena_dev.csv.

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
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT / "bench"))  # after the repo root: bench/leaderboard.py must not hide leaderboard.py

import quality  # noqa: E402
from arena_preference import recipe  # noqa: E402
from arena_preference.training_arguments import ArenaTrainingArguments, parse_args  # noqa: E402
from arena_dataset import load_arena  # noqa: E402
from arena_preference.battle_transforms import prompt_group, tokenize_arena
from arena_preference.pooled_towers import embed_towers  # noqa: E402

# Trainer options that only concern output: no checkpoints, logs or evaluation inside the sweep's fits.
QUIET = ["--do_train", "--save_strategy", "no", "--eval_strategy", "no", "--logging_strategy", "no",
         "--logging_first_step", "false", "--disable_tqdm", "true", "--report_to", "none"]


def fit(options: list[str], battles, seed: int, workdir: str):
    """train.py's training on pooled battles: its option parsing, model and Trainer; only the output options
    differ. Returns the model in eval mode."""
    from transformers import Trainer, set_seed

    from encoding_arena import ArenaCollator

    model_args, _, training_args = parse_args([*options, *QUIET, "--seed", str(seed), "--output_dir", workdir,
                                               "--overwrite_output_dir"])
    set_seed(training_args.seed)  # as train.py: the fresh head is drawn after seeding
    model, tokenizer = recipe.load_model_and_tokenizer(model_args)
    Trainer(model=model, args=training_args, train_dataset=recipe.model_columns(battles),
            data_collator=ArenaCollator(pad_token_id=tokenizer.pad_token_id or 0)).train()
    return model.eval()


@torch.no_grad()
def log_loss(model, battles, y: np.ndarray) -> float:
    """The model's 3-class log loss on pooled battles, in their own order (the head is symmetric in A and B)."""
    from encoding_arena import ArenaCollator

    inputs = ArenaCollator(pad_token_id=0)([{k: row[k] for k in ("pooled_a", "pooled_b", "style_a", "style_b")}
                                           for row in battles])
    probs = model(**inputs).logits.softmax(-1).double().numpy()
    return float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-15, None)).mean())


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
    parser.add_argument("--limit", type=int, default=None, help="first N rows only (smoke runs)")
    parser.add_argument("--settings", type=int, default=None, help="first N settings only (smoke runs)")
    args = parser.parse_args()

    started = time.time()
    quality.study_setup()
    data = load_arena(str(quality.DEFAULT_DATA))
    if args.limit:
        data = data.select(range(min(args.limit, len(data))))
    y = np.asarray(data["label"])
    folds = quality.grouped_folds([prompt_group(p) for p in data["prompt"]], args.folds, args.seed)
    workdir = tempfile.mkdtemp(prefix="arena-head-sweep-")
    model, tokenizer = recipe.load_model_and_tokenizer(parse_args([*QUIET, "--output_dir", workdir])[0])
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
    for setting in SETTINGS[: args.settings]:
        optim, lr, decay, epochs = setting
        options = ["--optim", optim, "--learning_rate", str(lr), "--weight_decay", str(decay), "--num_train_epochs",
                   str(epochs), "--per_device_train_batch_size", "32"]
        losses = []
        for fold, (train_rows, test_rows) in enumerate(folds):
            fitted = fit(options, battles.select(train_rows), args.seed + fold, workdir)
            losses.append(log_loss(fitted, battles.select(test_rows), y[test_rows]))
        mark = " (train.py default)" if setting == default else ""
        lines.append(f"| {optim}{mark} | {lr:g} | {decay:g} | {epochs} | {np.mean(losses):.4f} ± {np.std(losses):.4f} "
                     f"| {' '.join(f'{v:.3f}' for v in losses)} |")
        print(lines[-1], flush=True)
    lines[1] = lines[1].format(wall=f"{(time.time() - started) / 60:.1f} min on this machine")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
