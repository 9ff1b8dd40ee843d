"""How often each truncation strategy loses or cuts the final response, on the real dev battles.

    python bench/truncation.py [--data ../shared/data/arena_dev.csv] [--backbone embedded:minilm-l6]

For every tower (prompt + response A, prompt + response B) of every battle, at each max_length, counts whether
the encoded tower still holds the last response whole ("kept"), only its head ("cut"), or none of it ("lost":
the last answer the voter judged is not in the input at all). The figures are quoted next to the default
in encoding_arena.py.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from arena_dataset import load_arena  # noqa: E402
from arena_preference.model_loading import load_encoder  # noqa: E402
from encoding_arena import ASSISTANT_MARKER, encode_battles  # noqa: E402


def last_response_fate(ids: list[int], response: list[int], assistant: list[int], has_sep: bool) -> str:
    """"kept", "cut" or "lost": how much of `response` (the last answer's tokens) ends the tower `ids`."""
    body = ids[:-1] if has_sep else ids
    for k in range(len(response), -1, -1):
        tail = body[len(body) - k:] if k else []
        if tail == response[:k] and body[len(body) - k - len(assistant): len(body) - k] == assistant:
            return "kept" if k == len(response) else ("cut" if k else "lost")
    return "lost"  # the last exchange's marker is gone too (head truncation stopped in an earlier turn)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "arena_dev.csv"))
    parser.add_argument("--backbone", default="embedded:minilm-l6")
    parser.add_argument("--max_lengths", type=int, nargs="+", default=[512, 1024])
    args = parser.parse_args()

    battles = load_arena(args.data)
    _, tokenizer = load_encoder(args.backbone)
    assistant = tokenizer(ASSISTANT_MARKER, add_special_tokens=False)["input_ids"]
    has_sep = (tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id) is not None
    # Last responses, tokenized as encode_battles does (each turn on its own, no special tokens).
    last = {side: tokenizer([r[-1] for r in battles[f"response_{side}"]], add_special_tokens=False)["input_ids"]
            for side in ("a", "b")}
    towers = 2 * len(battles)
    multi = sum(len(p) > 1 for p in battles["prompt"])
    print(f"{args.data}: {len(battles)} battles ({multi} multi-turn), {towers} towers, tokenizer {args.backbone}")
    print(f"{'max_length':>10} {'strategy':>13} {'at max_length':>13} {'last cut':>9} {'last lost':>10} {'seconds':>8}")
    for max_length in args.max_lengths:
        for truncation in ("head", "latest_turns"):
            start = time.perf_counter()
            fates: Counter[str] = Counter()
            over = 0
            for lo in range(0, len(battles), 256):
                chunk = battles[lo: lo + 256]
                enc = encode_battles(chunk["prompt"], chunk["response_a"], chunk["response_b"], tokenizer,
                                     max_length, truncation)
                for side in ("a", "b"):
                    for i, ids in enumerate(enc[f"input_ids_{side}"]):
                        fates[last_response_fate(ids, last[side][lo + i], assistant, has_sep)] += 1
                        over += len(ids) == max_length
            seconds = time.perf_counter() - start
            print(f"{max_length:>10} {truncation:>13} {over / towers:>13.1%} {fates['cut'] / towers:>9.1%} "
                  f"{fates['lost'] / towers:>10.1%} {seconds:>8.1f}")


if __name__ == "__main__":
    main()
