"""Quality study on real votes: grouped K-fold cross-validation on ../shared/data/arena_dev.csv.

    python bench/quality.py                     # 5 folds grouped by prompt; writes bench/results/quality.{md,png}

In ONE run and on the SAME folds (grouped by the normalised first user turn: the same prompt appears in several
rows, so a row-level split leaks) it scores
- the class prior of the training folds,
- a logistic regression on response-length features (the known strong trivial baseline),
- train.py's default recipe, trained on each training fold the way train.py trains it: its defaults
  (`train.parse_args`), its model (`train.load_model_and_tokenizer`: embedded:minilm-l6, frozen), the pooled towers
  of `pooled_towers.embed_towers`, swap augmentation by `arena_dataset.swap_battles`, and a `Trainer`;
- the variants tried, each as train.py options on top of the defaults: classify vs rank head, style features,
  swap augmentation, swap test-time averaging, the newest style feature ablated, a fitted temperature (as
  `--calibrate` fits it), other max_length / truncation.
The encoder passes (one per max_length / truncation) are most of the time; `embed_towers` caches them with
`datasets`, so a rerun on the same data takes minutes.
Full fine-tuning of the encoder per fold (`--freeze_encoder false`) is out of reach on a 2-core CPU (about
10 minutes per fold-epoch at max_length 256); run it on a GPU with train.py and `--validation_file` per fold.
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
sys.path.insert(0, str(ROOT))

import train  # noqa: E402
from arena_dataset import load_arena, prompt_group, swap_battles, tokenize_arena  # noqa: E402
from calibration import fit_temperature  # noqa: E402
from encoding_arena import STYLE_FEATURES, ArenaCollator  # noqa: E402
from pooled_towers import embed_towers  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "arena_dev.csv"
METRIC_PATH = ROOT / "metrics" / "arena_metrics"
LENGTH_COLUMNS = [STYLE_FEATURES.index("log_chars"), STYLE_FEATURES.index("log_words")]

DEFAULT = "train.py defaults: classify + style, frozen encoder"
# name -> (train.py options on top of the defaults, swap test-time averaging)
RECIPES = {
    DEFAULT: ([], False),
    "+ swap aug": (["--swap_augment"], False),
    "+ swap aug + swap TTA": (["--swap_augment"], True),
    "rank (Davidson) head": (["--head", "rank"], False),
    "rank (Davidson) head + swap aug": (["--head", "rank", "--swap_augment"], False),
    "no style features": (["--style_features", "false"], False),
    "rank (Davidson) head, no style features": (["--head", "rank", "--style_features", "false"], False),
}
WITHOUT_PARAGRAPHS = "defaults without log_paragraphs"  # the last style feature added, ablated
CALIBRATED = "defaults + temperature (--calibrate)"
INPUT_VARIANTS = [(128, "latest_turns"), (256, "latest_turns"), (512, "head")]  # (max_length, truncation)
# Trainer options that only concern output: no checkpoints, logs or evaluation inside the study's fits.
QUIET = ["--do_train", "--save_strategy", "no", "--eval_strategy", "no", "--logging_strategy", "no",
         "--logging_first_step", "false", "--disable_tqdm", "true", "--report_to", "none"]


def grouped_folds(groups: list[str], k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import GroupKFold

    index = np.arange(len(groups))
    return list(GroupKFold(n_splits=k, shuffle=True, random_state=seed).split(index, groups=groups))


def fit_recipe(options: list[str], battles, seed: int, workdir: str):
    """train.py's training on `battles` (pooled towers from `embed_towers`, with labels): the same option parsing,
    model, swap augmentation and Trainer; only the output options (QUIET) differ. Returns the model in eval mode."""
    from datasets import concatenate_datasets
    from transformers import Trainer, set_seed

    model_args, data_args, training_args = train.parse_args([*options, *QUIET, "--seed", str(seed),
                                                             "--output_dir", workdir])
    set_seed(training_args.seed)  # as train.run: the fresh head is drawn after seeding
    model, tokenizer = train.load_model_and_tokenizer(model_args)
    if data_args.swap_augment:
        battles = concatenate_datasets([battles, swap_battles(battles)])
    Trainer(model=model, args=training_args, train_dataset=train.model_columns(battles),
            data_collator=ArenaCollator(pad_token_id=tokenizer.pad_token_id or 0)).train()
    return model.eval()


@torch.no_grad()
def predict_probs(model, battles, swap_tta: bool) -> np.ndarray:
    """`(N, 3)` probabilities of `model` on pooled battles; with `swap_tta` averaged with the swapped order."""
    inputs = ArenaCollator(pad_token_id=0)([{k: row[k] for k in ("pooled_a", "pooled_b", "style_a", "style_b")}
                                           for row in battles])
    probs = model(**inputs).logits.softmax(-1)
    if swap_tta:
        swapped = {"pooled_a": inputs["pooled_b"], "pooled_b": inputs["pooled_a"], "style_a": inputs["style_b"],
                   "style_b": inputs["style_a"]}
        probs = (probs + model(**swapped).logits.softmax(-1)[:, [1, 0, 2]]) / 2
    return probs.numpy()


def without_feature(battles, name: str):
    """The battles with one style feature's column zeroed on both sides: a linear head cannot use it."""
    column = STYLE_FEATURES.index(name)

    def zero(batch: dict) -> dict:
        return {side: [[0.0 if i == column else v for i, v in enumerate(row)] for row in batch[side]]
                for side in ("style_a", "style_b")}

    return battles.map(zero, batched=True, desc=f"Zeroing {name}")


def length_baseline(style_a: np.ndarray, style_b: np.ndarray, train: np.ndarray, test: np.ndarray,
                    y: np.ndarray) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    a, b = style_a[:, LENGTH_COLUMNS], style_b[:, LENGTH_COLUMNS]
    x = np.concatenate([a, b, a - b], axis=1)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(x[train], y[train])
    return model.predict_proba(x[test])


def score(metric, probs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    out = metric.compute(predictions=probs, references=y)
    return {"log_loss": out["log_loss"], "accuracy": out["accuracy"], "f1_tie": out["f1_winner_tie"]}


def study_setup():
    """Two threads, no progress bars or load messages for the many fits; returns the repo's evaluate metric."""
    import evaluate
    from datasets.utils.logging import disable_progress_bar
    from transformers.utils import logging as transformers_logging

    disable_progress_bar()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()  # "Loading weights" at every fit
    torch.set_num_threads(2)
    return evaluate.load(str(METRIC_PATH), keep_in_memory=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="first N rows only (smoke runs)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args(argv)

    started = time.time()
    metric = study_setup()
    data = load_arena(args.data)
    if args.limit:
        data = data.select(range(min(args.limit, len(data))))
    y = np.asarray(data["label"])
    groups = [prompt_group(p) for p in data["prompt"]]
    workdir = tempfile.mkdtemp(prefix="arena-quality-")
    model_args = train.parse_args([*QUIET, "--output_dir", workdir])[0]
    encoder_model, tokenizer = train.load_model_and_tokenizer(model_args)  # train.py's default model, frozen
    main_input = (encoder_model.config.max_length, encoder_model.config.truncation)

    t0 = time.time()
    towers = {}  # (max_length, truncation) -> pooled battles, every row of the data
    for length, truncation in [main_input, *(v for v in INPUT_VARIANTS if v != main_input)]:
        towers[length, truncation] = embed_towers(tokenize_arena(data, tokenizer, length, truncation), encoder_model)
    embed_seconds = time.time() - t0
    battles = towers[main_input]
    style_a, style_b = np.asarray(battles["style_a"], np.float32), np.asarray(battles["style_b"], np.float32)
    ablated = without_feature(battles, "log_paragraphs")
    variants = {f"defaults, max_length {length} {truncation}": (["--max_length", str(length), "--truncation",
                                                                 truncation], towers[length, truncation])
                for length, truncation in towers if (length, truncation) != main_input}

    names = ["class prior", "length logistic regression", *RECIPES, WITHOUT_PARAGRAPHS, CALIBRATED, *variants]
    temperatures: list[float] = []
    results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for fold, (train_rows, test_rows) in enumerate(grouped_folds(groups, args.folds, args.seed)):
        seed, test_y = args.seed + fold, y[test_rows]
        prior = np.bincount(y[train_rows], minlength=3) / len(train_rows)
        results["class prior"].append(score(metric, np.tile(prior, (len(test_rows), 1)), test_y))
        results["length logistic regression"].append(
            score(metric, length_baseline(style_a, style_b, train_rows, test_rows, y), test_y))
        models = {}
        for name, (options, swap_tta) in RECIPES.items():
            models[name] = fit_recipe(options, battles.select(train_rows), seed, workdir)
            results[name].append(score(metric, predict_probs(models[name], battles.select(test_rows), swap_tta),
                                       test_y))
        model = fit_recipe([], ablated.select(train_rows), seed, workdir)
        results[WITHOUT_PARAGRAPHS].append(score(metric, predict_probs(model, ablated.select(test_rows), False),
                                                 test_y))
        # --calibrate fits the temperature on the validation battles after training. Here: the default recipe
        # trained on an inner grouped 80% of the training folds, T fitted on the other 20%, then applied to the
        # default model trained on all training folds. The test fold is never seen.
        inner_train, inner_val = (train_rows[i] for i in grouped_folds([groups[j] for j in train_rows], 5,
                                                                       args.seed)[0])
        inner = fit_recipe([], battles.select(inner_train), seed, workdir)
        val_probs = predict_probs(inner, battles.select(inner_val), False)
        factor = fit_temperature(torch.from_numpy(np.log(val_probs)), torch.from_numpy(y[inner_val]))
        calibrated = models[DEFAULT]
        calibrated.config.temperature = calibrated.config.temperature * factor
        temperatures.append(calibrated.config.temperature)
        results[CALIBRATED].append(score(metric, predict_probs(calibrated, battles.select(test_rows), False), test_y))
        for name, (options, variant) in variants.items():
            model = fit_recipe(options, variant.select(train_rows), seed, workdir)
            results[name].append(score(metric, predict_probs(model, variant.select(test_rows), False), test_y))
        print(f"fold {fold}: " + ", ".join(f"{n}: {results[n][-1]['log_loss']:.4f}" for n in names), flush=True)

    wall = time.time() - started
    write_report(results, args, len(data), wall, embed_seconds, Path(args.out), temperatures, main_input)


def write_report(results, args, rows: int, wall: float, embed_seconds: float, out: Path,
                 temperatures: list[float], main_input: tuple[int, str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    recipe = ", ".join(f"{key} {value:g}" if isinstance(value, float) else f"{key} {value}"
                       for key, value in train.FROZEN_DEFAULTS.items())
    lines = [
        f"Grouped {args.folds}-fold CV by prompt on {rows} real votes ({Path(args.data).name}), seed {args.seed}; "
        f"frozen embedded:minilm-l6 towers at max_length {main_input[0]} ({main_input[1]}) unless named; heads "
        f"trained by train.py's Trainer with its defaults ({recipe}).",
        f"Command: `python bench/quality.py --folds {args.folds} --seed {args.seed}`; wall time {wall / 60:.1f} min on "
        f"this machine, of which {embed_seconds / 60:.1f} min for the {len({main_input, *INPUT_VARIANTS})} encoder "
        "passes (cached by datasets after the first run).",
        "",
        "| recipe | log loss (mean ± std) | accuracy | tie F1 | log loss per fold |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, folds in results.items():
        ll = np.array([f["log_loss"] for f in folds])
        acc = np.array([f["accuracy"] for f in folds])
        tie = np.array([f["f1_tie"] for f in folds])
        lines.append(f"| {name} | {ll.mean():.4f} ± {ll.std():.4f} | {acc.mean():.3f} ± {acc.std():.3f} | "
                     f"{tie.mean():.3f} ± {tie.std():.3f} | {' '.join(f'{v:.3f}' for v in ll)} |")
    lines += ["", f"Fitted temperatures per fold ({CALIBRATED}): {' '.join(f'{t:.3f}' for t in temperatures)}."]
    (out / "quality.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    names = list(results)
    means = [np.mean([f["log_loss"] for f in results[n]]) for n in names]
    stds = [np.std([f["log_loss"] for f in results[n]]) for n in names]
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(names) + 1.5))
    ax.barh(range(len(names)), means, xerr=stds, color=["#999"] * 2 + ["#3a7"] * (len(names) - 2))
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlim(min(means) - 0.05, max(means) + 0.03)
    ax.set_xlabel(f"3-class log loss, grouped {args.folds}-fold CV (lower is better)")
    fig.tight_layout()
    fig.savefig(out / "quality.png", dpi=120)


if __name__ == "__main__":
    main()
