"""Quality study on real votes: grouped K-fold cross-validation on ../shared/data/arena_dev.csv.

    python bench/quality.py                     # 5 folds grouped by prompt; writes bench/results/quality.{md,png}

In ONE run and on the SAME folds (grouped by the normalised first user turn: the same prompt appears in several
rows, so a row-level split leaks) it scores
- the class prior of the training folds,
- a logistic regression on response-length features (the known strong trivial baseline),
- head recipes on the frozen `embedded:minilm-l6` encoder (the ArenaModel head trained on cached pooled towers,
  which is what a CPU can afford for K folds x variants): classify vs rank head, style features, swap augmentation,
  swap test-time averaging, the newest style feature ablated, a fitted temperature, other max_length / truncation.
Full fine-tuning of the encoder per fold (train.py's default recipe) is out of reach on a 2-core CPU (about
10 minutes per fold-epoch at max_length 256); run it on a GPU with train.py and `--validation_file` per fold.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from arena_dataset import load_arena, prompt_group, tokenize_arena  # noqa: E402
from backbones import load_model  # noqa: E402
from calibration import fit_temperature  # noqa: E402
from configuration_arena import ArenaConfig  # noqa: E402
from encoding_arena import STYLE_FEATURES, ArenaCollator  # noqa: E402
from modeling_arena import ArenaModel  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "arena_dev.csv"
METRIC_PATH = ROOT / "metrics" / "arena_metrics"
L2 = 1e-2  # chosen by grouped CV on dev among 1e-3, 1e-2, 1e-1 (bench/quality.py --l2 ...)
LENGTH_COLUMNS = [STYLE_FEATURES.index("log_chars"), STYLE_FEATURES.index("log_words")]

# name -> (head, style_features, swap_augment, swap_tta); "default" is what the README recommends.
RECIPES = {
    "classify + style + swap aug + swap TTA": ("classify", True, True, True),
    "rank (Davidson) + style + swap aug": ("rank", True, True, False),
    "classify + style, no swap aug": ("classify", True, False, False),
    "classify + style + swap aug, no TTA": ("classify", True, True, False),
    "classify, no style features": ("classify", False, True, True),
    "rank (Davidson), no style features": ("rank", False, True, False),
}
CALIBRATED = "classify + style, no swap aug"  # the recipe that also gets a fitted temperature and input variants
WITHOUT_PARAGRAPHS = CALIBRATED + ", without log_paragraphs"  # the last style feature added, ablated
INPUT_VARIANTS = [(128, "latest_turns"), (512, "latest_turns"), (256, "head")]  # (max_length, truncation)


def grouped_folds(groups: list[str], k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import GroupKFold

    index = np.arange(len(groups))
    return list(GroupKFold(n_splits=k, shuffle=True, random_state=seed).split(index, groups=groups))


def embed(encoded, tokenizer, batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Pooled towers `(N, H)` x 2 from the frozen embedded:minilm-l6 encoder, length-sorted batches."""
    model, _ = load_model("embedded:minilm-l6", style_features=False)
    model.eval()
    collate = ArenaCollator(tokenizer.pad_token_id)
    lengths = [max(len(a), len(b)) for a, b in zip(encoded["input_ids_a"], encoded["input_ids_b"])]
    order = np.argsort(lengths, kind="stable")
    pooled_a = np.zeros((len(order), model.config.encoder_config.hidden_size), np.float32)
    pooled_b = np.zeros_like(pooled_a)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = collate([{"input_ids_a": encoded[int(i)]["input_ids_a"],
                              "input_ids_b": encoded[int(i)]["input_ids_b"]} for i in idx])
            ids = torch.cat([batch["input_ids_a"], batch["input_ids_b"]])
            mask = torch.cat([batch["attention_mask_a"], batch["attention_mask_b"]])
            pooled = model.encode(ids, mask).numpy()
            pooled_a[idx], pooled_b[idx] = pooled[: len(idx)], pooled[len(idx) :]
    return pooled_a, pooled_b


def cached_embeddings(args, data, tokenizer, max_length: int, truncation: str,
                      encoded=None) -> tuple[np.ndarray, np.ndarray]:
    """`embed` of the battles encoded at `max_length` / `truncation`, cached on disk by the data file's content,
    the row count and those two (the encoder pass is most of the study's time; the heads are refitted every run)."""
    key = hashlib.sha256(Path(args.data).read_bytes()).hexdigest()[:16]
    path = Path(args.cache_dir) / f"minilm-l6_{key}_{len(data)}_{max_length}_{truncation}.npz"
    if path.exists():
        args.cache_hits.append(path.name)
        cached = np.load(path)
        return cached["pooled_a"], cached["pooled_b"]
    if encoded is None:
        encoded = tokenize_arena(data, tokenizer, max_length, truncation)
    pooled_a, pooled_b = embed(encoded, tokenizer)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.npz")
    np.savez(partial, pooled_a=pooled_a, pooled_b=pooled_b)
    partial.replace(path)  # atomic: an interrupted run never leaves a cache file that looks complete
    return pooled_a, pooled_b


def split_features(pooled_a, pooled_b, style_a, style_b, **splits: np.ndarray) -> dict[str, dict[str, torch.Tensor]]:
    """{split: the head's inputs for the rows `idx`} for each `split=idx` given."""
    return {split: {"pooled_a": torch.from_numpy(pooled_a[idx]), "pooled_b": torch.from_numpy(pooled_b[idx]),
                    "style_a": torch.from_numpy(style_a[idx]), "style_b": torch.from_numpy(style_b[idx])}
            for split, idx in splits.items()}


def fit_head(features: dict[str, torch.Tensor], labels: torch.Tensor, encoder_config, head: str, style: bool,
             swap_augment: bool, seed: int, l2: float = L2, steps: int = 300) -> ArenaModel:
    """Train only the ArenaModel head (model.compare) on cached pooled towers: full-batch Adam with an L2 penalty
    `l2 * mean(W^2)` on the head weights (a few thousand votes against 2 x 384 embedding dimensions overfit fast).

    With swap augmentation both orders of every battle are in every step (labels 0 <-> 1 exchanged).
    """
    torch.manual_seed(seed)
    config = ArenaConfig(encoder_config=encoder_config.to_dict(), head=head, style_features=style)
    model = ArenaModel(config, encoder=torch.nn.Identity())  # the encoder is frozen: its outputs are cached
    pa, pb, sa, sb, y = features["pooled_a"], features["pooled_b"], features["style_a"], features["style_b"], labels
    if swap_augment:
        pa, pb, sa, sb = torch.cat([pa, pb]), torch.cat([pb, pa]), torch.cat([sa, sb]), torch.cat([sb, sa])
        y = torch.cat([y, torch.tensor([1, 0, 2])[y]])
    weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        logits, rewards = model.compare(pa, pb, sa if style else None, sb if style else None)
        loss = model.loss(logits, y, rewards) + l2 * sum((w**2).sum() for w in weights)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@torch.no_grad()
def head_probs(model: ArenaModel, features: dict[str, torch.Tensor], swap_tta: bool) -> np.ndarray:
    style = model.config.style_features
    sa, sb = (features["style_a"], features["style_b"]) if style else (None, None)
    probs = model.compare(features["pooled_a"], features["pooled_b"], sa, sb)[0].softmax(-1)
    if swap_tta:
        swapped = model.compare(features["pooled_b"], features["pooled_a"], sb, sa)[0].softmax(-1)
        probs = (probs + swapped[:, [1, 0, 2]]) / 2
    return probs.numpy()


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max_length", type=int, default=256)
    parser.add_argument("--truncation", default="latest_turns")
    parser.add_argument("--limit", type=int, default=None, help="first N rows only (smoke runs)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--cache_dir", default=str(Path.home() / ".cache" / "arena-preference" / "quality"),
                        help="pooled towers of the frozen encoder, reused by later runs on the same data")
    args = parser.parse_args(argv)
    args.cache_hits = []

    import evaluate

    started = time.time()
    torch.set_num_threads(2)
    metric = evaluate.load(str(METRIC_PATH), keep_in_memory=True)
    data = load_arena(args.data)
    if args.limit:
        data = data.select(range(min(args.limit, len(data))))
    y = np.asarray(data["label"])
    groups = [prompt_group(p) for p in data["prompt"]]
    _, tokenizer = load_model("embedded:minilm-l6")
    encoded = tokenize_arena(data, tokenizer, args.max_length, args.truncation)
    style_a, style_b = np.asarray(encoded["style_a"], np.float32), np.asarray(encoded["style_b"], np.float32)
    t0 = time.time()
    pooled_a, pooled_b = cached_embeddings(args, data, tokenizer, args.max_length, args.truncation, encoded)
    # Input variants of the best recipe: other max_length / truncation (their own encoder pass; same style features,
    # which are computed from the whole text).
    inputs = {f"{CALIBRATED}, max_length {length} {truncation}": cached_embeddings(args, data, tokenizer, length,
                                                                                  truncation)
              for length, truncation in INPUT_VARIANTS if (length, truncation) != (args.max_length, args.truncation)}
    embed_seconds = time.time() - t0
    encoder_config = load_model("embedded:minilm-l6")[0].config.encoder_config

    names = ["class prior", "length logistic regression", *RECIPES, WITHOUT_PARAGRAPHS, CALIBRATED + " + temperature",
             *inputs]
    # Zeroing a column removes the feature from a linear head: its weight gets no gradient but the L2 penalty's.
    ablated_a, ablated_b = style_a.copy(), style_b.copy()
    ablated_a[:, STYLE_FEATURES.index("log_paragraphs")] = ablated_b[:, STYLE_FEATURES.index("log_paragraphs")] = 0
    temperatures: list[float] = []
    results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for fold, (train, test) in enumerate(grouped_folds(groups, args.folds, args.seed)):
        prior = np.bincount(y[train], minlength=3) / len(train)
        results["class prior"].append(score(metric, np.tile(prior, (len(test), 1)), y[test]))
        results["length logistic regression"].append(
            score(metric, length_baseline(style_a, style_b, train, test, y), y[test]))
        feats = split_features(pooled_a, pooled_b, style_a, style_b, train=train, test=test)
        models = {}
        for name, (head, style, swap_augment, swap_tta) in RECIPES.items():
            models[name] = fit_head(feats["train"], torch.from_numpy(y[train]), encoder_config, head, style,
                                    swap_augment, seed=args.seed + fold)
            results[name].append(score(metric, head_probs(models[name], feats["test"], swap_tta), y[test]))
        head, style, swap_augment, swap_tta = RECIPES[CALIBRATED]
        ablated = split_features(pooled_a, pooled_b, ablated_a, ablated_b, train=train, test=test)
        model = fit_head(ablated["train"], torch.from_numpy(y[train]), encoder_config, head, style, swap_augment,
                         seed=args.seed + fold)
        results[WITHOUT_PARAGRAPHS].append(score(metric, head_probs(model, ablated["test"], swap_tta), y[test]))
        # Calibration: T fitted on an inner grouped 20% of the training folds (head refitted on the other 80%),
        # then applied to the head fitted on all training folds. The test fold is never seen.
        inner_train, inner_val = (train[i] for i in grouped_folds([groups[j] for j in train], 5, args.seed)[0])
        inner = split_features(pooled_a, pooled_b, style_a, style_b, train=inner_train, val=inner_val)
        inner_model = fit_head(inner["train"], torch.from_numpy(y[inner_train]), encoder_config, head, style,
                               swap_augment, seed=args.seed + fold)
        with torch.no_grad():
            val_logits = inner_model.compare(*(inner["val"][k] for k in ("pooled_a", "pooled_b", "style_a",
                                                                          "style_b")))[0]
        models[CALIBRATED].config.temperature = fit_temperature(val_logits, torch.from_numpy(y[inner_val]))
        temperatures.append(models[CALIBRATED].config.temperature)
        for name, (var_a, var_b) in inputs.items():
            var = split_features(var_a, var_b, style_a, style_b, train=train, test=test)
            model = fit_head(var["train"], torch.from_numpy(y[train]), encoder_config, head, style, swap_augment,
                             seed=args.seed + fold)
            results[name].append(score(metric, head_probs(model, var["test"], swap_tta), y[test]))
        results[CALIBRATED + " + temperature"].append(
            score(metric, head_probs(models[CALIBRATED], feats["test"], swap_tta), y[test]))
        print(f"fold {fold}: " + ", ".join(f"{n}: {results[n][-1]['log_loss']:.4f}" for n in names), flush=True)

    wall = time.time() - started
    write_report(results, args, len(data), wall, embed_seconds, Path(args.out), temperatures)


def write_report(results, args, rows: int, wall: float, embed_seconds: float, out: Path,
                 temperatures: list[float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    lines = [
        f"Grouped {args.folds}-fold CV by prompt on {rows} real votes ({Path(args.data).name}), seed {args.seed}; "
        f"frozen embedded:minilm-l6 towers at max_length {args.max_length} ({args.truncation}).",
        f"Command: `python bench/quality.py --folds {args.folds} --seed {args.seed} --max_length {args.max_length}`; "
        f"wall time {wall / 60:.1f} min on this machine (encoder passes {embed_seconds / 60:.1f} min"
        f"{f'; {len(args.cache_hits)} of them read from the cache' if args.cache_hits else ''}).",
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
