#!/usr/bin/env bash
# Throughput and peak GPU memory of the LLM recipe (dual tower vs joint cross-encoder, ~0.5B decoder, LoRA, bf16).
#   bench/gpu.sh              on a CUDA machine: prints the table, writes bench/results/gpu.json and gpu.md
#   bench/gpu.sh --dry_run    a tiny decoder for a few steps on the CPU: the same code path (the tests run it)
# Other options: python bench/gpu.py --help. Needs peft (pip install 'arena-preference[llm]').
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python}" bench/gpu.py "$@"
