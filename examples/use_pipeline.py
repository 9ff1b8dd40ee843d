"""The README's "Use a trained model" example: python examples/use_pipeline.py [MODEL_DIR_OR_REPO]

Needs only torch and transformers: the model folder (by default out/arena-minilm, written by `python train.py`)
carries its own code.
"""

import sys

from transformers import pipeline

model = sys.argv[1] if len(sys.argv) > 1 else "out/arena-minilm"
judge = pipeline("arena-preference", model=model, trust_remote_code=True)
# pipeline(model=..., trust_remote_code=True) works too: the task is read from config.json

print(judge({"prompt": "What is 2+2?", "response_a": "4", "response_b": "The answer is 5."}))
print(judge(prompt='["Hi", "Write a haiku about rain"]',  # Kaggle JSON-list strings work as they come
            response_a='["Hello!", "Soft rain on the roof\\nwhispers to the sleeping town\\npuddles hold the sky"]',
            response_b='["Hey", null]', swap_tta=True))
battles = [
    {"prompt": "Capital of France?", "response_a": "Paris.", "response_b": "I think it is Lyon."},
    {"prompt": ["Explain a hash table."], "response_a": ["A map."],
     "response_b": ["## Hash table\n- keys are **hashed** into buckets\n- lookups take O(1) on average"]},
]
for result in judge(battles, batch_size=16):
    print({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()})
