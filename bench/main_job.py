"""The README's main job, timed: `python train.py` with no arguments, in a fresh output folder.

    python bench/main_job.py            # writes bench/results/main_job.md

Runs train.py as a subprocess (its embedded defaults: embedded:minilm-l6 on examples/, the default recipe: one
pass of the frozen encoder, then 10 epochs of the head), measures wall time, CPU time and peak RSS of the child,
and reports the evaluation it wrote. "train runtime" is Trainer's (the head's epochs); the encoder pass is in the
wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "main_job.md"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        output_dir = Path(tmp) / "arena-minilm"
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        load = os.getloadavg()[0]
        start = time.perf_counter()
        # --output_dir only, so the run does not overwrite out/; everything else is the no-argument default.
        subprocess.run([sys.executable, str(ROOT / "train.py"), "--output_dir", str(output_dir)], cwd=ROOT, env=env,
                       check=True)
        wall = time.perf_counter() - start
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        evaluation = json.loads((output_dir / "eval_results.json").read_text())
        training = json.loads((output_dir / "train_results.json").read_text())
        steps = json.loads((output_dir / "trainer_state.json").read_text())["global_step"]
        predictions = sum(1 for _ in open(output_dir / "predictions.csv")) - 1
    lines = [
        f"`python train.py` (no arguments; run by `python bench/main_job.py` with a temporary --output_dir) on "
        f"{platform.machine()}, {os.cpu_count()} CPUs, load average {load:.2f} at the start.",
        "",
        "| wall | CPU (user + sys) | peak RSS | train steps | train runtime | eval log loss | eval accuracy "
        "| eval F1 (macro) | predictions |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| {wall / 60:.1f} min | {(usage.ru_utime + usage.ru_stime) / 60:.1f} min | {usage.ru_maxrss / 1024:.0f} MB "
        f"| {steps} | {training['train_runtime']:.0f} s "
        f"| {evaluation['eval_log_loss']:.4f} | {evaluation['eval_accuracy']:.4f} | {evaluation['eval_f1_macro']:.4f} "
        f"| {predictions} |",
        "",
        f"Evaluation on the {round(evaluation['eval_samples'])} battles of examples/validation.jsonl; a uniform guess "
        "scores log loss 1.0986.",
    ]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
