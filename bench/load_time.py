"""How long load_arena takes on the real dev file: first load (parse, validate, write Arrow) and from the cache.

    python bench/load_time.py           # writes bench/results/load_time.md
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from arena_dataset import load_arena  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "arena_dev.csv"))
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "load_time.md"))
    args = parser.parse_args()
    lines = [f"`load_arena('{Path(args.data).name}')` (`python bench/load_time.py`):", "",
             "| load | rows | multi-turn | labels A / B / tie | seconds |", "| --- | --- | --- | --- | --- |"]
    with tempfile.TemporaryDirectory() as cache:
        for what in ("first (parse + validate + write Arrow)", "again (from the datasets cache)"):
            start = time.perf_counter()
            data = load_arena(args.data, cache_dir=cache)
            seconds = time.perf_counter() - start
            labels = data["label"]
            share = " / ".join(f"{labels.count(k) / len(labels):.3f}" for k in range(3))
            multi = sum(len(p) > 1 for p in data["prompt"])
            lines.append(f"| {what} | {len(data):,} | {multi} | {share} | {seconds:.2f} |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
