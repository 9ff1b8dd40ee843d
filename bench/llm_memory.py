"""The GPU memory the LLM recipe (examples/llm_lora.yaml) needs to train, computed from the architectures' shapes:
no GPU and no download needed. Printed as a table and written to bench/results/llm_memory.md (docs/llm.md quotes it).

    python bench/llm_memory.py

What is counted, per GPU, for LoRA training under --bf16 with gradient checkpointing (train.py's code path):
- the frozen base weights in bf16: 2 bytes per parameter (apply_lora(base_dtype=bf16));
- the adapters (r=16 on q, k, v, o, gate, up, down projections) in float32 with their gradients and AdamW's two
  moments: 16 bytes per adapter parameter; the head is a few thousand parameters (ignored);
- activations: gradient checkpointing keeps each layer's input (bf16, B x S x H per layer) and recomputes one layer
  at a time in the backward pass; that layer's working set is estimated as B x S x (8H + 4I) bf16 values (inputs,
  norms, q/k/v/attention output, MLP gate/up/activation/product) and as much again for their gradients.
  Attention is taken as SDPA's memory-efficient/flash kernels (no S x S matrix). There is no LM head: AutoModel
  returns hidden states, so no B x S x vocabulary logits.
- at the end of training, merge_lora casts the encoder to float32 on the GPU to merge exactly: 4 bytes per base
  parameter for a moment ("merge" column); on a card smaller than that, the merge is the peak.
- not counted: the CUDA context and allocator slack (typically 1-3 GiB), the optimizer's temporary buffers.
B = sequences per step per GPU: per_device_train_batch_size battles x 2 (two towers, or two orders of the joint
sequence). S = max_length per sequence.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GIB = 2**30

# Public config.json values of one model per size.
MODELS = {
    "Qwen2.5-1.5B (1.5B)": dict(hidden=1536, layers=28, heads=12, kv_heads=2, head_dim=128, intermediate=8960,
                                vocab=151936, tied=True),
    "Mistral-7B-v0.1 (7B)": dict(hidden=4096, layers=32, heads=32, kv_heads=8, head_dim=128, intermediate=14336,
                                 vocab=32000, tied=False),
    "Gemma-2-9B (9B)": dict(hidden=3584, layers=42, heads=16, kv_heads=8, head_dim=256, intermediate=14336,
                            vocab=256000, tied=True),
}
RECIPES = {"dual tower": 1024, "cross-encoder": 2048}  # max_length per sequence: a joint sequence holds both answers


def parameters(m: dict) -> tuple[int, int]:
    """(base parameters of the AutoModel, i.e. without an LM head; LoRA r=16 adapter parameters)."""
    h, i, q, kv = m["hidden"], m["intermediate"], m["heads"] * m["head_dim"], m["kv_heads"] * m["head_dim"]
    shapes = [(h, q), (h, kv), (h, kv), (q, h), (h, i), (h, i), (i, h)]  # q, k, v, o, gate, up, down: (in, out)
    per_layer = sum(a * b for a, b in shapes) + 2 * h
    lora = m["layers"] * sum(16 * (a + b) for a, b in shapes)
    return m["vocab"] * h + m["layers"] * per_layer + h, lora


def training_gib(m: dict, batch_battles: int, length: int) -> dict[str, float]:
    base, lora = parameters(m)
    sequences = 2 * batch_battles
    tokens = sequences * length
    checkpoints = m["layers"] * tokens * m["hidden"] * 2
    working = 2 * tokens * (8 * m["hidden"] + 4 * m["intermediate"]) * 2
    parts = {"weights": 2 * base / GIB, "adapters": 16 * lora / GIB, "activations": (checkpoints + working) / GIB}
    parts["total"] = sum(parts.values())
    return parts


def main() -> str:
    lines = ["GPU memory to train with examples/llm_lora.yaml (LoRA r=16, --bf16 with the base held in bf16, gradient "
             "checkpointing), per GPU, computed by `python bench/llm_memory.py` (CUDA context and allocator slack, "
             "typically 1-3 GiB, not included):", "",
             "| model | base parameters | LoRA parameters | bf16 weights | adapters + AdamW | recipe (max_length) | "
             "activations, batch 2 | total, batch 2 | total, batch 8 | merge (float32 encoder) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, m in MODELS.items():
        base, lora = parameters(m)
        for recipe, length in RECIPES.items():
            two, eight = training_gib(m, 2, length), training_gib(m, 8, length)
            lines.append(f"| {name} | {base / 1e9:.2f}B | {lora / 1e6:.1f}M | {two['weights']:.1f} GiB | "
                         f"{two['adapters']:.2f} GiB | {recipe} ({length}) | {two['activations']:.1f} GiB | "
                         f"{two['total']:.1f} GiB | {eight['total']:.1f} GiB | {4 * base / GIB:.1f} GiB |")
    text = "\n".join(lines) + "\n"
    (ROOT / "bench" / "results" / "llm_memory.md").write_text(text)
    print(text)
    return text


if __name__ == "__main__":
    sys.exit(main() and 0)
