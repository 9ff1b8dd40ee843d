"""What the relevance terms cost: the prompt and each answer encoded on their own, beside the towers.

    python bench/relevance_cost.py      # writes bench/results/relevance_cost.{md,json}; a few minutes on 2 cores

Two measures, on ../shared/data/arena_dev.csv:
- **encoder work, counted** (no clock, so a shared machine cannot blur it): tokens the encoder reads per battle for
  the two towers (`encode_battles`, max_length 512, latest_turns) and for the relevance texts
  (`encode_relevance`, 256 each; a single-turn battle's last-turn slots are not encoded), summed over every battle,
  as sum(L) (the linear layers' work) and sum(L^2) (attention's);
- **pipeline speed, timed**: `ArenaPreferencePipeline` in fp32 (PyTorch) on every `--stride`-th battle, the same
  embedded:minilm-l6 weights and head with and without relevance terms, taking turns pass by pass (`--repeats`),
  median pairs/s of each.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEV_CSV = ROOT.parent / "shared" / "data" / "arena_dev.csv"
RESULTS = ROOT / "bench" / "results"


def token_counts(data, tokenizer) -> dict[str, float]:
    from encoding_arena import encode_battles, encode_relevance

    columns = [list(data[k]) for k in ("prompt", "response_a", "response_b")]
    towers = encode_battles(*columns, tokenizer, 512, "latest_turns")
    relevance = encode_relevance(*columns, tokenizer)
    tower_lengths = [len(x) for k in ("input_ids_a", "input_ids_b") for x in towers[k]]
    relevance_lengths = [len(seq) for k in ("prompt_ids", "answer_ids_a", "answer_ids_b") for pair in relevance[k]
                         for seq in pair if seq]
    out = {"battles": len(data), "tower_texts": len(tower_lengths), "relevance_texts": len(relevance_lengths)}
    for name, lengths in (("tower", tower_lengths), ("relevance", relevance_lengths)):
        out[f"{name}_tokens"] = float(sum(lengths))
        out[f"{name}_tokens_sq"] = float(sum(n * n for n in lengths))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stride", type=int, default=110, help="time every stride-th battle (default 110: 32 battles)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(RESULTS / "relevance_cost"))
    args = parser.parse_args(argv)
    torch.set_num_threads(2)

    from arena_dataset import load_arena
    from arena_preference.model_loading import load_model
    from pipeline_arena import ArenaPreferencePipeline

    data = load_arena(str(DEV_CSV))
    judges = {}
    for relevance in (False, True):
        torch.manual_seed(0)
        model, tokenizer = load_model("embedded:minilm-l6", relevance=relevance)
        with torch.no_grad():
            for param in model.classifier.parameters():
                param.normal_(0, 0.05)
        judges[relevance] = ArenaPreferencePipeline(model=model.eval(), tokenizer=tokenizer, precision="fp32")
    counts = token_counts(data, tokenizer)
    sample = data.select(range(0, len(data), args.stride))
    battles = [{k: row[k] for k in ("prompt", "response_a", "response_b")} for row in sample]
    seconds = {False: [], True: []}
    for _ in range(args.repeats):
        for relevance, judge in judges.items():
            start = time.perf_counter()
            judge(battles, batch_size=1)
            seconds[relevance].append(time.perf_counter() - start)
    speed = {("with" if k else "without"): len(battles) / statistics.median(v) for k, v in seconds.items()}
    report = {"args": vars(args), "counts": counts, "pairs": len(battles), "pairs_per_second": speed}
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    c = counts
    lines = [
        f"Command: `python bench/relevance_cost.py --stride {args.stride} --repeats {args.repeats}` on a 2-core CPU "
        "shared with other jobs (torch 2 threads, fp32 PyTorch).", "",
        "| measure | towers only | + relevance texts | ratio |", "| --- | --- | --- | --- |",
        f"| texts encoded, all {c['battles']} dev battles | {c['tower_texts']} | "
        f"{c['tower_texts'] + c['relevance_texts']} | {1 + c['relevance_texts'] / c['tower_texts']:.2f} |",
        f"| tokens, sum(L) | {c['tower_tokens']:.0f} | {c['tower_tokens'] + c['relevance_tokens']:.0f} | "
        f"{1 + c['relevance_tokens'] / c['tower_tokens']:.2f} |",
        f"| attention, sum(L^2) | {c['tower_tokens_sq']:.3g} | {c['tower_tokens_sq'] + c['relevance_tokens_sq']:.3g} | "
        f"{1 + c['relevance_tokens_sq'] / c['tower_tokens_sq']:.2f} |",
        f"| pipeline pairs/s, {len(battles)} battles, batch 1 (median of {args.repeats}) | {speed['without']:.2f} | "
        f"{speed['with']:.2f} | {speed['without'] / speed['with']:.2f}x the time |",
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
