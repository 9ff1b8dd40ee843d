"""Validation of leaderboard.py: real votes, a synthetic recovery check, and memory on 100k battles.

    python bench/leaderboard.py                      # all three parts -> bench/results/leaderboard.{md,json}
    python bench/leaderboard.py --parts real         # only one part; the report keeps the others' last figures

- real: out-of-fold predictions on ../shared/data/arena_dev.csv from grouped-by-prompt cross-validation
  (bench/quality.py's machinery: its cached frozen-encoder features, `grouped_folds` and its recipes, the default
  first), A/B-swap averaged as leaderboard.py scores; then, per source, MT-Bench (ids 2xxxxxx, six models) and
  PandaLM (4xxxxxx, five models), `leaderboard.rate` on the predictions against the same fit on the human votes:
  Kendall tau, both orders, pairwise order accuracy, log loss. The recipe names come from bench/quality.py, so
  this reruns unchanged when its default changes (`--recipes` picks others).
- synthetic: votes simulated under known Davidson ratings; is the fitted order right, and how often does the 95%
  bootstrap interval (over prompts) cover the true rating?
- memory: peak RSS of `python leaderboard.py --battles` on synthetic files of 10k and 100k battles with a tiny
  model (embedded:tiny-deberta, max_length 32), each in a fresh process.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT / "bench"))  # bench/quality.py
sys.path.insert(0, str(ROOT))  # before bench/, whose leaderboard.py is this file

from arena_preference import leaderboard as lb  # noqa: E402

DEV = ROOT.parent / "shared" / "data" / "arena_dev.csv"
OUT = ROOT / "bench" / "results"
SOURCES = {2: "MT-Bench", 4: "PandaLM"}
SWAP = [1, 0, 2]


# ----------------------------------------------------------------------------------------------------- real votes
def real(folds: int, seed: int, bootstrap: int, recipes: list[str] | None, limit: int | None = None) -> dict:
    import torch

    import quality as q
    from arena_dataset import load_arena
    from arena_preference.model_loading import load_encoder

    torch.set_num_threads(2)
    encoder, tokenizer = load_encoder(q.ENCODER)
    battles = q.load_battles(DEV, "dev", encoder, tokenizer, limit)  # cached features (~/.cache/arena-quality)
    data = load_arena(str(DEV)).select_columns(["id", "model_a", "model_b"]).select(range(len(battles)))
    ids, model_a, model_b = np.asarray(data["id"]), data["model_a"], data["model_b"]
    names = recipes or [q.DEFAULT_NEW, q.REFERENCE]
    results = {}
    for name in names:
        probs, content = np.zeros((len(battles), 3)), np.full((len(battles), 3), np.nan)
        for fold, (train_rows, test_rows) in enumerate(q.grouped_folds(battles.meta["group"], folds, seed)):
            pred = q.predict(name, battles.take(train_rows), battles.take(test_rows), seed + fold, None)
            probs[test_rows] = (pred.probs + pred.probs_swapped[:, SWAP]) / 2  # as leaderboard.py's swap_tta
            if pred.content is not None:
                content[test_rows] = pred.content
        per_source = {}
        for source, label in SOURCES.items():
            rows = np.flatnonzero(ids // 1_000_000 == source)
            if len(rows) == 0:  # a --limit smoke run
                continue
            models = sorted({model_a[i] for i in rows} | {model_b[i] for i in rows})
            scored = lb.ScoredBattles(
                models, np.array([models.index(model_a[i]) for i in rows]),
                np.array([models.index(model_b[i]) for i in rows]),
                np.unique([battles.meta["group"][i] for i in rows], return_inverse=True)[1],
                probs[rows], content[rows] if np.isfinite(content[rows]).all() else None, battles.y[rows])
            board = lb.rate(scored, bootstrap, seed, style_reason=None if scored.style_probs is not None else
                            "this recipe has no style-controlled probabilities")
            # the human leaderboard's own uncertainty: the same bootstrap on the votes as outcomes
            votes = lb.rate(lb.ScoredBattles(models, scored.model_a, scored.model_b, scored.group,
                                             np.eye(3)[scored.labels]), bootstrap, seed)
            human_ci = {r["model"]: (r["ci_low"], r["ci_high"]) for r in votes["models"]}
            for row in board["models"]:
                row["human_ci_low"], row["human_ci_high"] = human_ci[row["model"]]
            human = sorted(board["models"], key=lambda r: -r["human_rating"])
            per_source[label] = {"battles": len(rows), "models": len(models), "agreement": board["agreement"],
                                 "agreement_style_controlled": board.get("agreement_style_controlled"),
                                 "predicted_order": [r["model"] for r in board["models"]],
                                 "human_order": [r["model"] for r in human], "rows": board["models"]}
            controlled = board.get("agreement_style_controlled")
            print(f"{name} / {label}: tau {board['agreement']['kendall_tau']:.3f}"
                  + (f", style-controlled {controlled['kendall_tau']:.3f}" if controlled else ""), flush=True)
        results[name] = per_source
    return {"folds": folds, "seed": seed, "bootstrap": bootstrap, "recipes": results}


# ------------------------------------------------------------------------------------------------------ synthetic
def synthetic(simulations: int, prompts: int, bootstrap: int, seed: int) -> dict:
    """Six models with known ratings; every prompt has all 15 pairs, one vote each drawn from Davidson."""
    import torch

    torch.set_num_threads(1)
    truth = np.array([1180.0, 1100.0, 1030.0, 980.0, 910.0, 800.0])  # mean 1000, as leaderboard's default anchor
    theta, nu = (truth - truth.mean()) / lb.ELO_SCALE, 0.6
    pairs = np.array([(i, j) for i in range(6) for j in range(i + 1, 6)])
    a, b = np.tile(pairs[:, 0], prompts), np.tile(pairs[:, 1], prompts)
    group = np.repeat(np.arange(prompts), len(pairs))
    half = (theta[a] - theta[b]) / 2
    p = np.stack([np.exp(half), np.exp(-half), np.full_like(half, nu)], 1)
    p /= p.sum(1, keepdims=True)
    rng = np.random.default_rng(seed)
    covered, order_right, errors, widths = [], [], [], []
    for s in range(simulations):
        votes = (rng.random(len(p))[:, None] > p.cumsum(1)).sum(1)
        models = [f"m{k}" for k in range(6)]
        scored = lb.ScoredBattles(models, a, b, group, np.eye(3)[votes])
        board = lb.rate(scored, bootstrap, seed + s)
        rows = {r["model"]: r for r in board["models"]}
        fitted = np.array([rows[m]["rating"] for m in models])
        low, high = (np.array([rows[m][k] for m in models]) for k in ("ci_low", "ci_high"))
        covered += list((low <= truth) & (truth <= high))
        order_right.append(bool((np.diff(fitted) < 0).all()))
        errors += list(fitted - truth)
        widths += list(high - low)
    return {"simulations": simulations, "prompts": prompts, "battles": int(len(a)), "bootstrap": bootstrap,
            "true_ratings": truth.tolist(), "nu": nu, "coverage_95": float(np.mean(covered)),
            "order_right": float(np.mean(order_right)), "rmse": float(np.sqrt(np.mean(np.square(errors)))),
            "mean_ci_width": float(np.mean(widths))}


# --------------------------------------------------------------------------------------------------------- memory
def write_battles(path: Path, n: int) -> None:
    """n labelled Kaggle-layout battles among 8 models, 28 battles per prompt, answers of 3 to 30 words."""
    rng = random.Random(0)
    models = [f"model-{i}" for i in range(8)]
    words = "the answer is a list of steps with code and more words about it".split()
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "model_a", "model_b", "prompt", "response_a", "response_b", *lb.LABELS])
        for i in range(n):
            a, b = rng.sample(models, 2)
            texts = [f"question {i // 28} " + " ".join(rng.choices(words, k=5)),
                     *(" ".join(rng.choices(words, k=rng.randint(3, 30))) for _ in range(2))]
            label = rng.randrange(3)
            writer.writerow([i, a, b, *(json.dumps([t]) for t in texts), *(int(k == label) for k in range(3))])


def memory(sizes: list[int]) -> dict:
    work = Path(tempfile.mkdtemp(prefix="leaderboard-memory-"))
    model = work / "tiny"
    code = ("import sys, torch; sys.path.insert(0, sys.argv[2]); torch.manual_seed(0)\n"
            "from backbones import load_model\n"
            "m, t = load_model('embedded:tiny-deberta', max_length=32); m.save_pretrained(sys.argv[1]); "
            "t.save_pretrained(sys.argv[1])\n")
    subprocess.run([sys.executable, "-c", code, str(model), str(ROOT)], check=True, capture_output=True)
    runs = []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    for n in sizes:
        path = work / f"battles-{n}.csv"
        write_battles(path, n)
        start = time.time()
        with open(work / f"stderr-{n}.txt", "w") as stderr:
            process = subprocess.Popen([sys.executable, str(ROOT / "leaderboard.py"), "--model_name_or_path",
                                        str(model), "--battles", str(path), "--output_dir", str(work / f"board-{n}"),
                                        "--cache_dir", str(work / f"cache-{n}"), "--batch_size", "64"], env=env,
                                       stdout=subprocess.DEVNULL, stderr=stderr)
            _, status, usage = os.wait4(process.pid, 0)  # this child's own rusage: ru_maxrss in KiB on Linux
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError((work / f"stderr-{n}.txt").read_text()[-2000:])
        peak = usage.ru_maxrss / 1024
        board = json.loads((work / f"board-{n}" / "leaderboard.json").read_text())
        runs.append({"battles": n, "file_mib": path.stat().st_size / 2**20, "peak_rss_mib": peak,
                     "wall_s": time.time() - start, "scored_now": board["produced_by"]["scored_now"]})
        print(runs[-1], flush=True)
    return {"runs": runs, "model": "embedded:tiny-deberta (random), max_length 32", "batch_size": 64}


# --------------------------------------------------------------------------------------------------------- report
def render(report: dict) -> str:
    lines = ["# leaderboard.py on real and synthetic votes", "",
             f"Command: `python bench/leaderboard.py` (parts: real, synthetic, memory); CPU: {report['cpu']}.", ""]
    if "real" in report:
        r = report["real"]
        lines += ["## Predicted vs human leaderboard, out of fold", "",
                  f"{r['folds']}-fold cross-validation grouped by prompt on all of arena_dev.csv (bench/quality.py's "
                  f"frozen embedded:minilm-l6 features and head training), predictions averaged over both A/B "
                  f"orders as leaderboard.py does; Davidson ratings from the predictions (soft outcomes) against "
                  f"the same fit on the human votes; {r['bootstrap']} bootstrap resamples of prompts, seed "
                  f"{r['seed']}. The target: MT-Bench Kendall tau at least 0.73 (at most two of fifteen model "
                  "pairs out of order).", "",
                  "| recipe | source | battles | models | Kendall tau | Spearman | pairwise order | log loss | "
                  "style-controlled: tau / pairwise order |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for name, per in r["recipes"].items():
            for source, s in per.items():
                a, c = s["agreement"], s.get("agreement_style_controlled")
                content = f"{c['kendall_tau']:.3f} / {c['pairwise_accuracy']:.3f}" if c else "n/a"
                lines.append(f"| {name} | {source} | {s['battles']} | {s['models']} | {a['kendall_tau']:.3f} | "
                             f"{a['spearman']:.3f} | {a['pairwise_accuracy']:.3f} | {a['log_loss']:.4f} | {content} |")
        lines += [""]
        for name, per in r["recipes"].items():
            for source, s in per.items():
                lines += [f"**{name}, {source}**: predicted order " + " > ".join(s["predicted_order"])
                          + "; human order " + " > ".join(s["human_order"]) + ".", ""]
                lines += ["| model | predicted rating (95% CI) | human rating (95% CI) | style-controlled |",
                          "| --- | --- | --- | --- |"]
                for row in s["rows"]:
                    style = "" if row["style_controlled_rating"] is None else f"{row['style_controlled_rating']:.0f}"
                    human = f"{row['human_rating']:.0f} ({row['human_ci_low']:.0f}–{row['human_ci_high']:.0f})"
                    lines.append(f"| {row['model']} | {row['rating']:.0f} ({row['ci_low']:.0f}–{row['ci_high']:.0f}) "
                                 f"| {human} | {style} |")
                lines += [""]
    if "synthetic" in report:
        s = report["synthetic"]
        lines += ["## Synthetic recovery", "",
                  f"Six models with ratings {', '.join(f'{t:.0f}' for t in s['true_ratings'])} (nu {s['nu']}); each "
                  f"simulation has {s['prompts']} prompts × 15 pairs = {s['battles']} votes drawn from Davidson; "
                  f"{s['simulations']} simulations, {s['bootstrap']} bootstrap resamples of prompts each.", "",
                  f"- order exactly right: {s['order_right']:.1%} of simulations",
                  f"- 95% interval covers the true rating: {s['coverage_95']:.1%} of (simulation, model) cases",
                  f"- rating RMSE {s['rmse']:.1f}, mean interval width {s['mean_ci_width']:.1f}", ""]
    if "memory" in report:
        m = report["memory"]
        lines += ["## Memory and speed on synthetic battle files", "",
                  f"`python leaderboard.py --battles FILE --batch_size 64` with {m['model']}, a fresh process and "
                  "an empty score cache per size, 8 models, 100 bootstrap resamples.", "",
                  "| battles | file (MiB) | peak RSS (MiB) | wall (s) |", "| --- | --- | --- | --- |"]
        for run in m["runs"]:
            lines.append(f"| {run['battles']:,} | {run['file_mib']:.1f} | {run['peak_rss_mib']:.0f} | "
                         f"{run['wall_s']:.0f} |")
        lines += [""]
    return "\n".join(lines)


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="*", default=["real", "synthetic", "memory"])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bootstrap", type=int, default=100)
    parser.add_argument("--recipes", nargs="*", default=None, help="bench/quality.py RECIPES names")
    parser.add_argument("--limit", type=int, default=None, help="real: first N rows only (smoke runs)")
    parser.add_argument("--simulations", type=int, default=40)
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    args = parser.parse_args(argv)

    path = OUT / "leaderboard.json"
    for part in args.parts:
        started = time.time()
        if part == "real":
            result = real(args.folds, args.seed, args.bootstrap, args.recipes, args.limit)
        elif part == "synthetic":
            result = synthetic(args.simulations, 100, args.bootstrap, args.seed)
        elif part == "memory":
            result = memory(sorted(args.sizes))
        else:
            parser.error(f"unknown part {part!r}")
        result["wall_s"] = time.time() - started
        # read just before writing: a part run on its own keeps the others' last figures
        report = json.loads(path.read_text()) if path.exists() else {}
        report["cpu"] = f"{_cpu_name()}, AVX2 only, {os.cpu_count()} cores (shared)"
        report[part] = result
        lb.write_atomically(path, lambda temp: temp.write_text(json.dumps(report, indent=1) + "\n"))
        lb.write_atomically(OUT / "leaderboard.md", lambda temp: temp.write_text(render(report)))
        print(render(report))


if __name__ == "__main__":
    main()
