"""Which head recipe and which rating method give the leaderboard closest to the human one?

    python bench/leaderboard_recipes.py              # -> bench/results/leaderboard_recipes.{md,json}, ~20 min on
                                                     # 2 CPU cores (out-of-fold predictions are cached under
                                                     # ~/.cache/arena-quality/leaderboard-oof; --no_cache refits)

Every recipe is bench/quality.py's head training on its cached frozen-encoder features of
../shared/data/arena_dev.csv. For each recipe and each CV seed (default 0..4): 5-fold cross-validation grouped by
prompt gives out-of-fold predictions for every battle, A/B-swap averaged as leaderboard.py scores. For each rating
method, per source (MT-Bench, ids 2xxxxxx, 6 models; PandaLM, 4xxxxxx, 5 models), the ratings from the predictions
are compared with the Davidson fit on the human votes: Kendall tau (tau-b). Reported as mean ± sd over the CV
seeds, with the per-battle log loss of the predictions (all 3,519 battles and per source).

Leave one source out (bench/quality.py's `leave_one_source_out`): train on the other sources (minus battles on a
prompt the held-out source has), predict the held-out source, rate it; mean ± sd over head-training seeds.

The source is used for evaluation only (to pick the battles a leaderboard is fitted on), never as a model input.

Selection rule: a recipe/method is a candidate only if it improves the mean of the MT-Bench and PandaLM taus over
CV seeds without lowering either source's mean tau by more than its sd, without raising the log loss by more than
0.002, and without worsening the leave-one-source-out taus; MT-Bench alone decides nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT / "bench"))  # bench/quality.py
sys.path.insert(0, str(ROOT))  # before bench/, whose leaderboard.py is the bench script

from arena_preference import leaderboard as lb  # noqa: E402

OUT = ROOT / "bench" / "results"
OOF_CACHE_VERSION = "1"
SOURCES = {2: "MT-Bench", 4: "PandaLM"}
SWAP = [1, 0, 2]
EPS = 1e-12


# --------------------------------------------------------------------------------------------------- the recipes
@dataclass
class SklearnLR:
    """Multinomial logistic regression (sklearn, L2, C) on [a, b, style_a, style_b] (mean of the last 3 layers, the
    new style features), standardised, trained on both A/B orders, predictions swap-averaged: the default's inputs
    without the head's structure."""

    C: float = 0.05

    def predict(self, train, test, seed: int, extra=None):
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        import quality as q

        def x(b):
            a, bb = q.content_vectors(b, "mean_last3")
            return np.concatenate([a, bb, b.style_a, b.style_b], 1)

        both = train.concat(train.swapped())
        model = make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=300, random_state=seed))
        model.fit(x(both), both.y)
        probs = (model.predict_proba(x(test)) + model.predict_proba(x(test.swapped()))[:, SWAP]) / 2
        return {"probs": probs}


def recipes() -> dict:
    import quality as q

    base = dict(pooling="mean_last3")
    wd = q.TRAINING["weight_decay"]
    return {
        "default": q.RECIPES[q.DEFAULT_NEW],
        "seed ensemble x5": q.Recipe(**base, ensemble=5),
        f"weight decay x0.1 ({wd / 10:g})": q.Recipe(**base, training={"weight_decay": wd / 10}),
        f"weight decay x5 ({wd * 5:g})": q.Recipe(**base, training={"weight_decay": wd * 5}),
        "3 epochs": q.Recipe(**base, training={"epochs": 3}),
        "label smoothing 0.1": q.Recipe(**base, label_smoothing=0.1),
        "balanced class weights": q.Recipe(**base, class_weight="balanced"),
        "both A/B orders": q.Recipe(**base, both_orders=True),
        "+ HH-RLHF extra votes": q.Recipe(**base, extra=True),
        "+ prompt-answer relevance": q.Recipe(**base, relevance=True),
        "answer tokens only": q.Recipe(pooling="response"),
        "last layer only": q.RECIPES[q.LAST_LAYER],
        "rank (Davidson) head": q.Recipe(**base, head="rank"),
        "sklearn LR (C 0.05)": SklearnLR(0.05),
        "sklearn LR (C 0.005)": SklearnLR(0.005),
    }


def head_rewards(head, recipe, test) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-response rewards r(A), r(B) with P(A) / P(B) = exp(r(A) - r(B)) where the head has them: the rank head's
    reward (content + per-side style), the classify head's content term (w1 - w2) . a (its style term is a
    function of the pair, not of one answer)."""
    import torch

    import quality as q

    a, b, sa, sb = recipe.inputs(test)
    with torch.no_grad():
        if isinstance(head, q.RankHead):
            return ((head.reward(a) + head.style(sa)).squeeze(-1).numpy(),
                    (head.reward(b) + head.style(sb)).squeeze(-1).numpy())
        if isinstance(head, q.ArenaClassifyHead):
            w = head.content.weight[0]
            h = a.shape[1]
            v = w[:h] - w[h:]
            return (a @ v).numpy(), (b @ v).numpy()
    return None


def predict(spec, train, test, seed: int, extra) -> dict:
    """{'probs': swap-averaged (N, 3), 'content': (N, 3) or absent, 'reward_a'/'reward_b': (N,) or absent}."""
    import torch

    if not hasattr(spec, "fit"):
        return spec.predict(train, test, seed, extra)
    parts: dict[str, list] = {"probs": [], "content": [], "reward_a": [], "reward_b": []}
    for k in range(spec.ensemble):
        head = spec.fit(train, seed + 1000 * k, extra)
        with torch.no_grad():
            own, content = head(*spec.inputs(test))
            swapped, _ = head(*spec.inputs(test.swapped()))
        parts["probs"].append((own.softmax(-1).numpy() + swapped.softmax(-1).numpy()[:, SWAP]) / 2)
        if content is not None:
            parts["content"].append(content.softmax(-1).numpy())
        rewards = head_rewards(head, spec, test)
        if rewards is not None:
            parts["reward_a"].append(rewards[0])
            parts["reward_b"].append(rewards[1])
    return {k: np.mean(v, 0) for k, v in parts.items() if v}


def _cache_path(name: str, spec, kind: str, seed: int, folds: int, n: int) -> Path:
    key = hashlib.sha256(repr((repr(spec), kind, seed, folds, n, OOF_CACHE_VERSION)).encode()).hexdigest()[:16]
    return Path.home() / ".cache" / "arena-quality" / "leaderboard-oof" / f"{kind}-{key}.npz"


def out_of_fold(spec, battles, extra, folds: int, seed: int) -> dict:
    import quality as q

    n = len(battles)
    out: dict[str, np.ndarray] = {}
    for fold, (train_rows, test_rows) in enumerate(q.grouped_folds(battles.meta["group"], folds, seed)):
        pred = predict(spec, battles.take(train_rows), battles.take(test_rows), seed + fold, extra)
        for k, v in pred.items():
            out.setdefault(k, np.full((n,) + v.shape[1:], np.nan))[test_rows] = v
    return out


def loso(spec, battles, extra, source: int, seed: int) -> dict:
    import quality as q

    train_rows, test_rows = q.leave_one_source_out(battles, source)
    return predict(spec, battles.take(train_rows), battles.take(test_rows), seed, extra)


def cached(path: Path, use_cache: bool, compute) -> dict:
    if use_cache and path.exists():
        return dict(np.load(path))
    result = compute()
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **result)
    return result


# --------------------------------------------------------------------------------------------- rating methods
def _normalise(p: np.ndarray) -> np.ndarray:
    return p / p.sum(1, keepdims=True)


def _one_hot(p: np.ndarray) -> np.ndarray:
    return np.eye(3)[p.argmax(1)]


def _davidson(pred: dict, rows, a, b, m, outcomes_of) -> np.ndarray | None:
    outcomes = outcomes_of(pred, rows)
    if outcomes is None:
        return None
    return lb.fit_davidson(a, b, outcomes, m)[0]


def _expected_score(pred, rows, a, b, m):
    p = pred["probs"][rows]
    score = p[:, 0] + p[:, 2] / 2
    total = np.bincount(a, score, m) + np.bincount(b, 1 - score, m)
    return total / (np.bincount(a, minlength=m) + np.bincount(b, minlength=m))


def _gap_regression(pred, rows, a, b, m, per_prompt: np.ndarray | None = None):
    """Least squares theta_a - theta_b ~ log P(A) / P(B) (mean 0)."""
    p = np.clip(pred["probs"][rows], EPS, 1)
    gap = np.log(p[:, 0] / p[:, 1])
    if per_prompt is not None:  # each prompt's gaps scaled to unit RMS: every prompt weighs the same
        g = per_prompt[rows]
        rms = np.sqrt(np.bincount(g, gap ** 2) / np.maximum(np.bincount(g), 1))
        gap = gap / np.maximum(rms[g], 1e-6)
    design = np.zeros((len(rows), m))
    design[np.arange(len(rows)), a] += 1
    design[np.arange(len(rows)), b] -= 1
    design = np.vstack([design, np.ones((1, m))])
    return np.linalg.lstsq(design, np.append(gap, 0.0), rcond=None)[0]


def _mean_reward(pred, rows, a, b, m):
    if "reward_a" not in pred:
        return None
    total = np.bincount(a, pred["reward_a"][rows], m) + np.bincount(b, pred["reward_b"][rows], m)
    return total / (np.bincount(a, minlength=m) + np.bincount(b, minlength=m))


def _power(t: float):
    return lambda pred, rows: _normalise(pred["probs"][rows] ** (1 / t))


def _geometric(w: float):
    """softmax(w * full logits + (1 - w) * content logits): the style terms scaled by w (w = 0: style-controlled)."""
    def outcomes(pred, rows):
        if "content" not in pred:
            return None
        full, content = np.clip(pred["probs"][rows], EPS, 1), np.clip(pred["content"][rows], EPS, 1)
        return _normalise(np.exp(w * np.log(full) + (1 - w) * np.log(content)))
    return outcomes


# name -> (ratings(pred, rows, a, b, m) -> (M,) or None, probabilities the method fits on (for their log loss))
METHODS = {
    "soft outcomes (now)": lambda pr, r, a, b, m: _davidson(pr, r, a, b, m, lambda p, rr: p["probs"][rr]),
    "hard (argmax) outcomes": lambda pr, r, a, b, m: _davidson(pr, r, a, b, m, lambda p, rr: _one_hot(p["probs"][rr])),
    "sharpened T=0.5": lambda pr, r, a, b, m: _davidson(pr, r, a, b, m, _power(0.5)),
    "sharpened T=0.25": lambda pr, r, a, b, m: _davidson(pr, r, a, b, m, _power(0.25)),
    "softened T=2": lambda pr, r, a, b, m: _davidson(pr, r, a, b, m, _power(2.0)),
    "style-controlled (content only)": lambda pr, r, a, b, m: _davidson(pr, r, a, b, m, _geometric(0.0)),
    "half style (logit blend w=0.5)": lambda pr, r, a, b, m: _davidson(pr, r, a, b, m, _geometric(0.5)),
    "prob blend 0.5 full + 0.5 content": lambda pr, r, a, b, m: _davidson(
        pr, r, a, b, m, lambda p, rr: None if "content" not in p else (p["probs"][rr] + p["content"][rr]) / 2),
    "mean expected score": _expected_score,
    "gap regression (least squares on log P(A)/P(B))": _gap_regression,
    "mean per-response reward": _mean_reward,
}
PER_PROMPT = "gap regression, per-prompt unit RMS"


# ------------------------------------------------------------------------------------------------------- scoring
@dataclass
class Source:
    label: str
    rows: np.ndarray  # into the 3519 battles
    models: list[str]
    a: np.ndarray
    b: np.ndarray
    group: np.ndarray
    human: np.ndarray
    y: np.ndarray


def sources(battles, model_a, model_b, ids) -> dict[int, Source]:
    out = {}
    for source, label in SOURCES.items():
        rows = np.flatnonzero(ids // 1_000_000 == source)
        models = sorted({model_a[i] for i in rows} | {model_b[i] for i in rows})
        a = np.array([models.index(model_a[i]) for i in rows])
        b = np.array([models.index(model_b[i]) for i in rows])
        group = np.unique([battles.meta["group"][i] for i in rows], return_inverse=True)[1]
        human = lb.fit_davidson(a, b, np.eye(3)[battles.y[rows]], len(models))[0]
        out[source] = Source(label, rows, models, a, b, group, human, battles.y[rows])
    return out


def taus(pred: dict, src: Source, local: np.ndarray) -> dict[str, float | None]:
    """Kendall tau of every method's ratings against the human ratings; `local` indexes `pred` for src's battles."""
    from scipy.stats import kendalltau

    m = len(src.models)
    out = {}
    for name, method in METHODS.items():
        ratings = method(pred, local, src.a, src.b, m)
        out[name] = None if ratings is None else float(kendalltau(ratings, src.human).statistic)
    g = np.zeros(int(local.max()) + 1, int)
    g[local] = src.group
    out[PER_PROMPT] = float(kendalltau(_gap_regression(pred, local, src.a, src.b, m, g), src.human).statistic)
    return out


def log_loss(probs: np.ndarray, y: np.ndarray) -> float:
    return float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-15, 1)).mean())


def _stats(values: list) -> dict | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"mean": float(np.mean(values)), "sd": float(np.std(values)), "values": [round(v, 4) for v in values]}


# ---------------------------------------------------------------------------------------------------------- main
def run(names: list[str] | None, seeds: list[int], folds: int, use_cache: bool, limit: int | None) -> dict:
    import torch

    import quality as q
    from arena_dataset import load_arena
    from arena_preference.model_loading import load_encoder

    torch.set_num_threads(1)
    encoder, tokenizer = load_encoder(q.ENCODER)
    battles = q.load_battles(q.DEFAULT_DATA, "dev", encoder, tokenizer, limit)
    extra = q.load_battles(q.EXTRA_DATA, "hh", encoder, tokenizer, limit) if q.EXTRA_DATA.exists() else None
    data = load_arena(str(q.DEFAULT_DATA)).select_columns(["id", "model_a", "model_b"]).select(range(len(battles)))
    ids = np.asarray(data["id"])
    srcs = sources(battles, data["model_a"], data["model_b"], ids)
    all_recipes = recipes()
    results = {}
    for name in names or list(all_recipes):
        spec, started = all_recipes[name], time.time()
        cv = {method: {s.label: [] for s in srcs.values()} for method in [*METHODS, PER_PROMPT]}
        losses = {"all": [], **{s.label: [] for s in srcs.values()}}
        for seed in seeds:
            pred = cached(_cache_path(name, spec, "cv", seed, folds, len(battles)), use_cache,
                          lambda: out_of_fold(spec, battles, extra, folds, seed))
            losses["all"].append(log_loss(pred["probs"], battles.y))
            for src in srcs.values():
                losses[src.label].append(log_loss(pred["probs"][src.rows], src.y))
                for method, tau in taus(pred, src, src.rows).items():
                    cv[method][src.label].append(tau)
        held = {method: {s.label: [] for s in srcs.values()} for method in [*METHODS, PER_PROMPT]}
        held_loss = {s.label: [] for s in srcs.values()}
        for source, src in srcs.items():
            for seed in seeds:
                pred = cached(_cache_path(name, spec, f"loso{source}", seed, folds, len(battles)), use_cache,
                              lambda: loso(spec, battles, extra, source, seed))
                held_loss[src.label].append(log_loss(pred["probs"], src.y))
                for method, tau in taus(pred, src, np.arange(len(src.rows))).items():
                    held[method][src.label].append(tau)
        results[name] = {
            "spec": repr(spec),
            "log_loss": {k: _stats(v) for k, v in losses.items()},
            "loso_log_loss": {k: _stats(v) for k, v in held_loss.items()},
            "cv_tau": {m: {k: _stats(v) for k, v in per.items()} for m, per in cv.items()},
            "loso_tau": {m: {k: _stats(v) for k, v in per.items()} for m, per in held.items()},
            "wall_s": time.time() - started,
        }
        soft = results[name]["cv_tau"]["soft outcomes (now)"]
        print(f"{name}: MT-Bench {soft['MT-Bench']['mean']:.3f}, PandaLM {soft['PandaLM']['mean']:.3f}, log loss "
              f"{results[name]['log_loss']['all']['mean']:.4f} ({time.time() - started:.0f} s)", flush=True)
    return {"seeds": seeds, "folds": folds, "battles": len(battles), "recipes": results,
            "methods": [*METHODS, PER_PROMPT]}


def _fmt(s: dict | None) -> str:
    return "n/a" if s is None else f"{s['mean']:.3f} ± {s['sd']:.3f}"


def render(report: dict) -> str:
    seeds = report["seeds"]
    lines = [
        "# Which recipe and rating method track the human leaderboard?", "",
        f"Command: `{report['command']}`; {report['wall_minutes']:.1f} min on {report['cpu']}"
        + (" (out-of-fold predictions read from the cache where present; `--no_cache` refits everything, about 25 "
           "min)." if report.get("cache") else ", every head refitted."), "",
        f"Out of fold: {report['folds']}-fold CV grouped by prompt on arena_dev.csv ({report['battles']} battles), CV "
        f"seeds {', '.join(map(str, seeds))}; every figure is mean ± sd over those seeds. Leave one source out "
        "(LOSO): trained on the other sources minus battles on the held-out source's prompts, head-training seeds "
        f"{', '.join(map(str, seeds))}. Kendall tau (tau-b) of the predicted ratings against the Davidson fit on the "
        "human votes of that source; log loss: per battle, of the swap-averaged predictions (all battles, and the "
        "source's own). The target: MT-Bench tau >= 0.73.", "",
        "Selection rule: better mean of the two sources' CV taus, neither source's mean tau lower by more than its "
        "sd, log loss (all battles) not higher by more than 0.002, LOSO taus not lower. MT-Bench alone decides "
        "nothing.", "",
    ]
    recipes_ = report["recipes"]
    base = recipes_.get("default")

    def row(name, method, r):
        cv, held = r["cv_tau"][method], r["loso_tau"][method]
        both = None
        if cv["MT-Bench"] and cv["PandaLM"]:
            both = (cv["MT-Bench"]["mean"] + cv["PandaLM"]["mean"]) / 2
        return (f"| {name} | {method} | {_fmt(cv['MT-Bench'])} | {_fmt(cv['PandaLM'])} | "
                + ("n/a" if both is None else f"{both:.3f}")
                + f" | {_fmt(held['MT-Bench'])} | {_fmt(held['PandaLM'])} | "
                f"{r['log_loss']['all']['mean']:.4f} | {r['log_loss']['MT-Bench']['mean']:.4f} / "
                f"{r['log_loss']['PandaLM']['mean']:.4f} | {r['loso_log_loss']['MT-Bench']['mean']:.4f} / "
                f"{r['loso_log_loss']['PandaLM']['mean']:.4f} |")

    header = ["| recipe | rating method | CV tau MT-Bench | CV tau PandaLM | mean of both | LOSO tau MT-Bench | "
              "LOSO tau PandaLM | log loss, all | log loss MT-Bench / PandaLM | LOSO log loss MT-Bench / PandaLM |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    if base:
        lines += ["## Rating methods on the default recipe's predictions", "",
                  "The same out-of-fold predictions, rated in different ways (the log loss columns are the "
                  "predictions', the same on every row).", "", *header]
        lines += [row("default", m, base) for m in report["methods"]]
        lines += [""]
    lines += ["## Recipes (head training on the cached features), soft-outcome ratings (today's method) and "
              "style-controlled", "", *header]
    for name, r in recipes_.items():
        lines.append(row(name, "soft outcomes (now)", r))
        if r["cv_tau"]["style-controlled (content only)"]["MT-Bench"] is not None:
            lines.append(row(name, "style-controlled (content only)", r))
        if r["cv_tau"]["mean per-response reward"]["MT-Bench"] is not None and name != "default":
            lines.append(row(name, "mean per-response reward", r))
    lines += ["", "## Every recipe × method: mean of the two sources' CV taus", "",
              "| recipe | " + " | ".join(report["methods"]) + " |", "| --- |" + " --- |" * len(report["methods"])]
    for name, r in recipes_.items():
        cells = []
        for m in report["methods"]:
            cv = r["cv_tau"][m]
            cells.append("n/a" if not cv["MT-Bench"] else f"{(cv['MT-Bench']['mean'] + cv['PandaLM']['mean']) / 2:.3f}"
                         f" ({cv['MT-Bench']['mean']:.2f}/{cv['PandaLM']['mean']:.2f})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Cells: mean of both (MT-Bench / PandaLM)."]
    if report.get("verdict"):
        lines += ["", "## Verdict", "", report["verdict"]]
    return "\n".join(lines) + "\n"


def verdict(report: dict) -> str:
    """Apply the selection rule to every recipe × method against the default recipe with soft outcomes; for every
    combination with a better mean of both sources' CV taus, name the criteria it fails."""
    base = report["recipes"].get("default")
    if base is None:
        return ""
    ref_cv, ref_held = base["cv_tau"]["soft outcomes (now)"], base["loso_tau"]["soft outcomes (now)"]
    ref_loss = base["log_loss"]["all"]["mean"]
    ref_both = (ref_cv["MT-Bench"]["mean"] + ref_cv["PandaLM"]["mean"]) / 2
    better, reached = [], []
    for name, r in report["recipes"].items():
        for m in report["methods"]:
            cv, held = r["cv_tau"][m], r["loso_tau"][m]
            if not cv["MT-Bench"]:
                continue
            both = (cv["MT-Bench"]["mean"] + cv["PandaLM"]["mean"]) / 2
            if cv["MT-Bench"]["mean"] >= 0.73:
                reached.append(f"{name} / {m} ({cv['MT-Bench']['mean']:.3f})")
            if both <= ref_both + 1e-9:
                continue
            fails = [f"CV {s} tau {cv[s]['mean']:.3f} < {ref_cv[s]['mean']:.3f}" for s in SOURCES.values()
                     if cv[s]["mean"] < ref_cv[s]["mean"] - max(ref_cv[s]["sd"], 1e-9)]
            loss = r["log_loss"]["all"]["mean"]
            if loss > ref_loss + 0.002:
                fails.append(f"log loss {loss:.4f} > {ref_loss:.4f} + 0.002")
            fails += [f"LOSO {s} tau {held[s]['mean']:.3f} < {ref_held[s]['mean']:.3f}" for s in SOURCES.values()
                      if held[s]["mean"] < ref_held[s]["mean"] - 1e-9]
            better.append((both, f"{name} / {m}: {both:.3f} (MT-Bench {cv['MT-Bench']['mean']:.3f}, PandaLM "
                                 f"{cv['PandaLM']['mean']:.3f}) -> " + ("PASSES" if not fails else
                                                                        "fails: " + "; ".join(fails))))
    passing = [t for _, t in sorted(better, reverse=True) if t.endswith("PASSES")]
    lines = [f"Reference (default recipe, soft outcomes): mean of both {ref_both:.3f} (MT-Bench "
             f"{ref_cv['MT-Bench']['mean']:.3f}, PandaLM {ref_cv['PandaLM']['mean']:.3f}), log loss {ref_loss:.4f}, "
             f"LOSO {ref_held['MT-Bench']['mean']:.3f} / {ref_held['PandaLM']['mean']:.3f}.", "",
             f"Combinations tried: {sum(1 for r in report['recipes'].values() for m in report['methods'] if r['cv_tau'][m]['MT-Bench'])}"
             f"; with MT-Bench mean CV tau >= 0.73: {len(reached)}; passing the selection rule: "
             + ("; ".join(passing) if passing else "none") + ".", "",
             "Every combination with a better mean of both sources' CV taus than the reference, and why it is not "
             "taken:", ""]
    lines += [f"- {t}" for _, t in sorted(better, reverse=True)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", nargs="*", default=None, help="names from recipes() (default: all)")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2, 3, 4])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--no_cache", action="store_true", help="refit instead of reading cached predictions")
    parser.add_argument("--limit", type=int, default=None, help="first N rows only (smoke runs; not written)")
    parser.add_argument("--name", default="leaderboard_recipes")
    args = parser.parse_args(argv)
    started = time.time()
    report = run(args.recipes, args.seeds, args.folds, not args.no_cache, args.limit)
    command = "python bench/leaderboard_recipes.py" + (
        " --recipes " + " ".join(f'"{r}"' for r in args.recipes) if args.recipes else "") + (
        f" --seeds {' '.join(map(str, args.seeds))}" if args.seeds != [0, 1, 2, 3, 4] else "")
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_leaderboard", ROOT / "bench" / "leaderboard.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    report.update(command=command, cache=not args.no_cache, wall_minutes=(time.time() - started) / 60,
                  cpu=f"{bench._cpu_name()}, {os.cpu_count()} cores (shared), torch 1 thread")
    report["verdict"] = verdict(report)
    text = render(report)
    print(text)
    if args.limit is None:
        lb.write_atomically(OUT / f"{args.name}.json", lambda t: t.write_text(json.dumps(report, indent=1) + "\n"))
        lb.write_atomically(OUT / f"{args.name}.md", lambda t: t.write_text(text))


if __name__ == "__main__":
    main()
