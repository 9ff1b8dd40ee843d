"""The frozen recipe's pooling pass (what dominates `python train.py` on real data), timed per precision in one run.

    python bench/pooling_pass.py                          # all of ../shared/data/arena_dev.csv, fp32 vs auto
    python bench/pooling_pass.py --limit 64 --precisions fp32 auto bf16

`pooled_towers.embed_towers` runs the frozen encoder once per battle (embedded:minilm-l6, max_length 512, batches
of 16, the recipe's defaults); the head's epochs that follow take seconds. Precisions take turns, pass by pass, in
one process (the shared machine's drift hits them alike); the datasets cache is off, so every pass computes. The
report gives battles/s per precision, its ratio to the first one, and the largest difference of a pooled vector
from the first precision's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEV_CSV = ROOT.parent / "shared" / "data" / "arena_dev.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=None, help="the first N battles only")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "auto"])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "pooling_pass.md"))
    args = parser.parse_args()

    import datasets
    import numpy as np
    import torch

    from arena_dataset import load_arena
    from arena_preference.battle_transforms import tokenize_arena
    from arena_preference.model_loading import load_model
    from arena_preference.pooled_towers import embed_towers
    from precision_arena import cpu_flags, resolve_precision

    torch.set_num_threads(args.threads)
    datasets.disable_caching()
    data = load_arena(str(DEV_CSV))
    if args.limit:
        data = data.select(range(min(args.limit, len(data))))
    model, tokenizer = load_model("embedded:minilm-l6", max_length=512)
    tokenized = tokenize_arena(data, tokenizer, 512)
    load = os.getloadavg()[0]
    times: dict[str, list[float]] = {p: [] for p in args.precisions}
    pooled: dict[str, np.ndarray] = {}
    for _ in range(args.repeats):
        for precision in args.precisions:
            start = time.perf_counter()
            out = embed_towers(tokenized, model, batch_size=16, precision=precision)
            times[precision].append(time.perf_counter() - start)
            pooled[precision] = np.concatenate([np.asarray(out["pooled_a"]), np.asarray(out["pooled_b"])])
    first = args.precisions[0]
    flags = ", ".join(name for name, on in cpu_flags().items() if on) or "none known"
    lines = [
        f"`python bench/pooling_pass.py {' '.join(sys.argv[1:])}`: {len(data)} battles of arena_dev.csv, "
        f"embedded:minilm-l6, max_length 512, batch 16, {args.threads} threads; CPU features: {flags}; "
        f"load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end; median of {args.repeats} "
        "pass(es), the precisions taking turns.",
        "",
        "| precision asked | runs as | pass s | battles/s | vs " + first + " | max abs d(pooled) vs " + first + " |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for precision in args.precisions:
        seconds = statistics.median(times[precision])
        base = statistics.median(times[first])
        diff = float(np.abs(pooled[precision] - pooled[first]).max())
        lines.append(f"| {precision} | {resolve_precision(precision)} | {seconds:.1f} | {len(data) / seconds:.2f} "
                     f"| {base / seconds:.2f}x | {diff:.1e} |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
