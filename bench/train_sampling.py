"""Fine-tuning speed of train.py itself: Trainer's default random sampler against
`--train_sampling_strategy group_by_length`, on the same real battles, one full epoch each.

    python bench/train_sampling.py        # ~6 minutes on 2 cores; writes bench/results/train_sampling.md

bench/throughput.py measures training steps on hand-made batches; this runs `train.main` end to end
(`--freeze_encoder false`, the seed's batch of 2 pairs, embedded:minilm-l6 at max_length 512, 2 threads) and
reads Trainer's own `train_samples_per_second`. Battles: every `--stride`-th of the first rows of
../shared/data/arena_dev.csv, as in throughput.py. Whole epochs only: length grouping sorts each mega-batch of 50
batches longest first, so a partial epoch would time the longest battles. The strategies take turns,
`--repeats` times, in one process; the table gives each one's median.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEV_CSV = ROOT.parent / "shared" / "data" / "arena_dev.csv"
RESULTS = ROOT / "bench" / "results"
STRATEGIES = ("random", "group_by_length")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n_battles", type=int, default=64)
    parser.add_argument("--stride", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "train_sampling.md"))
    args = parser.parse_args()

    from arena_preference import train
    from arena_dataset import export_arena
    from arena_dataset import load_arena
    from quality import study_setup

    study_setup()  # 2 threads, quiet progress bars
    started = time.time()
    rates: dict[str, list[float]] = {s: [] for s in STRATEGIES}
    with tempfile.TemporaryDirectory() as tmp:
        battles = load_arena(str(DEV_CSV)).select(range(0, args.n_battles * args.stride, args.stride))
        folder = export_arena(battles, Path(tmp) / "battles")
        for _ in range(args.repeats):
            for strategy in STRATEGIES:
                result = train.main([
                    "--dataset_name", str(folder), "--model_name_or_path", "embedded:minilm-l6", "--max_length", "512",
                    "--freeze_encoder", "false", "--optim", "adamw_torch", "--learning_rate", "5e-5", "--weight_decay", "0",
                    "--per_device_train_batch_size", "2", "--train_sampling_strategy", strategy, "--num_train_epochs", "1",
                    "--validation_split_percentage", "0", "--do_train", "--eval_strategy", "no",
                    "--save_strategy", "no", "--disable_tqdm", "true", "--output_dir", str(Path(tmp) / strategy)])
                rates[strategy].append(result["metrics"]["train_samples_per_second"])
                print(f"{strategy}: {rates[strategy][-1]:.3f} battles/s", flush=True)
    median = {s: statistics.median(v) for s, v in rates.items()}
    lines = [
        f"`python bench/train_sampling.py`: train.py fine-tuning (`--freeze_encoder false`, batch 2, "
        f"embedded:minilm-l6, max_length 512, 2 threads), one epoch over {args.n_battles} battles (rows 0, "
        f"{args.stride}, ... of arena_dev.csv), the strategies taking turns, {args.repeats} times each. "
        f"Run took {time.time() - started:.0f} s.",
        "",
        "| --train_sampling_strategy | battles/s (median) | each run | vs random |",
        "|---|---:|---|---:|",
    ]
    for strategy in STRATEGIES:
        runs = ", ".join(f"{r:.3f}" for r in rates[strategy])
        lines.append(f"| {strategy} | {median[strategy]:.3f} | {runs} | {median[strategy] / median['random']:.2f}x |")
    report = "\n".join(lines) + "\n"
    Path(args.out).write_text(report)
    print(report)


if __name__ == "__main__":
    main()
