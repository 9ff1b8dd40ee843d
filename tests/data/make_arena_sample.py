"""Writes arena_sample.csv: 60 synthetic battles in the Kaggle lmsys-chatbot-arena layout, hand-made here (no row
comes from a real data set). It has the quirks of the real files: JSON-list turns, `null` turns, multi-turn rows,
multi-line markdown answers, one-hot winner columns, ids whose first digit is the source (1-4) and prompts that
come back in several rows. Rerun to regenerate: python tests/data/make_arena_sample.py
"""

import csv
import json
from pathlib import Path

MODELS = ["orca-lite", "falcon-mini", "helix-7b", "quill-13b", "nova-chat", "sage-2"]
TOPICS = ["boiling water", "hash tables", "sleep", "the French Revolution", "binary search", "photosynthesis",
          "compound interest", "haiku", "recursion", "the moon landing"]


def answers(topic: str, k: int) -> tuple[str, str]:
    """A short answer and a long markdown one; which side gets which varies with k."""
    short = f"It is about {topic}." if k % 3 else f"{topic.capitalize()}: see a textbook."
    long = (f"## {topic.capitalize()}\n\nHere is an overview of {topic}:\n\n1. **What it is**: the basics.\n"
            f"2. **Why it matters**: a second point.\n3. **An example**:\n\n```text\n{topic} step {k}\n```\n")
    return (short, long) if k % 2 else (long, short)


def rows() -> list[list]:
    out = []
    for k in range(60):
        source = 1 + k % 4
        topic = TOPICS[k % len(TOPICS)]  # each prompt comes back in 6 rows
        a, b = answers(topic, k)
        a_longer = len(a) > len(b)
        if source == 2:  # MT-Bench-like: two turns, and now and then a null second answer
            prompt = [f"Tell me about {topic}.", "Now say it in one sentence."]
            response_a, response_b = [a, f"{topic} in short."], [b, None if k % 8 == 1 else "One sentence."]
        else:
            prompt, response_a, response_b = [f"Tell me about {topic}."], [a], [b]
        # Longer answers win more often than not; ties now and then.
        longer = 0 if a_longer else 1
        winner = 2 if k % 5 == 0 else 1 - longer if k % 7 == 3 else longer
        one_hot = [int(winner == i) for i in range(3)]
        out.append([source * 1_000_000 + k, MODELS[k % 6], MODELS[(k + 1 + (k // 6) % 5) % 6], json.dumps(prompt),
                    json.dumps(response_a), json.dumps(response_b), *one_hot])
    return out


if __name__ == "__main__":
    with open(Path(__file__).with_name("arena_sample.csv"), "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "model_a", "model_b", "prompt", "response_a", "response_b", "winner_model_a",
                         "winner_model_b", "winner_tie"])
        writer.writerows(rows())
