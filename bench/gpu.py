"""Training and inference throughput and peak GPU memory of the LLM recipe: the dual tower and the joint
cross-encoder on a randomly initialised ~0.5B decoder (Qwen2-0.5B's shape, built from a config: nothing is
downloaded), pooling "last", LoRA r=16 on the attention and MLP projections, bf16 autocast, gradient checkpointing.

    bench/gpu.sh                      # on a machine with a CUDA GPU: writes bench/results/gpu.json and gpu.md
    bench/gpu.sh --dry_run            # a few steps of a tiny decoder on the CPU: the same code path, no figures

Both architectures read the same battles: a prompt of P tokens and two answers of R tokens each. The dual tower
encodes two towers of P + R tokens per battle; the cross-encoder two orders of the joint sequence, P + 2R tokens
each. Training steps (the base weights held in bf16, adapters and head float32, bf16 autocast) run forward,
backward and an AdamW step; inference runs the merged model (what is saved, float32) as the pipeline's
precision="bf16" runs it on a GPU: a bf16 copy of the encoder beside the float32 model, under
torch.inference_mode. Peak memory is torch.cuda.max_memory_allocated per phase (inference: the float32 model and
its bf16 copy included).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from arena_preference.lora import apply_lora, merge_lora  # noqa: E402
from configuration_arena import ArenaConfig  # noqa: E402
from modeling_arena import ArenaModel  # noqa: E402
from precision_arena import prepare_for  # noqa: E402

# Qwen2-0.5B's shape (494M parameters with tied embeddings); random weights are as fast as trained ones.
DECODER_0_5B = dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                    num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=4096,
                    tie_word_embeddings=True, use_cache=False)
DECODER_TINY = dict(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True, use_cache=False)
ARCHITECTURES = {"dual tower": False, "cross-encoder": True}


def build(decoder: dict[str, Any], cross_encoder: bool, max_length: int, lora_r: int) -> ArenaModel:
    """A fresh ArenaModel around a random Llama-architecture decoder, with LoRA applied (as train.py does)."""
    from transformers import LlamaConfig

    config = ArenaConfig(encoder_config=LlamaConfig(**decoder).to_dict(), pooling="last", cross_encoder=cross_encoder,
                         style_features=False, max_length=max_length, pool_layers=1)
    model = ArenaModel(config)
    apply_lora(model, r=lora_r, base_dtype=torch.bfloat16)  # as train.py --bf16: the frozen base held in bf16
    # non-reentrant checkpointing: what examples/llm_lora.yaml asks of Trainer (DDP-safe)
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    return model


def battle_batch(batch: int, length: int, vocab: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Random token ids for `batch` battles, both sequences `length` long, and random labels."""
    ids = lambda: torch.randint(3, vocab, (batch, length), device=device)  # noqa: E731
    mask = torch.ones(batch, length, dtype=torch.long, device=device)
    return {"input_ids_a": ids(), "attention_mask_a": mask, "input_ids_b": ids(), "attention_mask_b": mask.clone(),
            "labels": torch.randint(0, 3, (batch,), device=device)}


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def measure(name: str, cross_encoder: bool, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    decoder = DECODER_TINY if args.dry_run else DECODER_0_5B
    length = args.prompt_tokens + (2 if cross_encoder else 1) * args.response_tokens
    model = build(decoder, cross_encoder, length, args.lora_r).to(device)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    lora_trainable = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and "lora_" in n)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16)

    model.train()
    reset_peak(device)
    seconds = 0.0
    for step in range(args.warmup + args.steps):
        batch = battle_batch(args.train_batch, length, decoder["vocab_size"], device)
        synchronise(device)
        start = time.perf_counter()
        with autocast:
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        synchronise(device)
        if step >= args.warmup:
            seconds += time.perf_counter() - start
        if not torch.isfinite(loss):
            raise RuntimeError(f"{name}: non-finite training loss at step {step}")
    train_peak = peak_gib(device)
    train_rate = args.train_batch * args.steps / seconds

    del optimizer
    merge_lora(model)  # inference runs what is saved: the merged (float32) model ...
    model.eval()
    reset_peak(device)
    runner, _ = prepare_for(model, "bf16", device)  # ... as the pipeline runs it on a GPU: a bf16 copy of its encoder
    seconds = 0.0
    with torch.inference_mode():
        for step in range(args.warmup + args.steps):
            batch = battle_batch(args.predict_batch, length, decoder["vocab_size"], device)
            batch.pop("labels")
            synchronise(device)
            start = time.perf_counter()
            probs = runner(**batch).logits.float().softmax(-1)
            synchronise(device)
            if step >= args.warmup:
                seconds += time.perf_counter() - start
            if not torch.isfinite(probs).all():
                raise RuntimeError(f"{name}: non-finite probabilities")
    predict_rate = args.predict_batch * args.steps / seconds
    result = {
        "architecture": name, "sequence_tokens": length, "sequences_per_battle": 2,
        "parameters": sum(p.numel() for p in model.parameters()), "trainable": trainable,
        "lora_trainable": lora_trainable, "train_batch": args.train_batch, "predict_batch": args.predict_batch,
        "train_battles_per_s": train_rate, "train_peak_gib": train_peak, "predict_battles_per_s": predict_rate,
        "predict_peak_gib": peak_gib(device),
    }
    del model, runner
    return result


def table(results: dict[str, Any]) -> str:
    def gib(value: float | None) -> str:
        return "n/a (CPU)" if value is None else f"{value:.1f}"

    lines = [f"{results['device']}; decoder {results['decoder']}, LoRA r={results['lora_r']}, bf16 autocast, "
             f"gradient checkpointing; prompt {results['prompt_tokens']} + answers 2 x {results['response_tokens']} "
             "tokens per battle.", "",
             "| | dual tower | cross-encoder |", "| --- | --- | --- |"]
    runs = {r["architecture"]: r for r in results["runs"]}
    dual, joint = runs["dual tower"], runs["cross-encoder"]
    rows = [("parameters (trainable: LoRA + head)",
             lambda r: f"{r['parameters'] / 1e6:.3g}M ({r['trainable'] / 1e6:.3g}M)"),
            ("tokens per sequence (2 per battle)", lambda r: str(r["sequence_tokens"])),
            (f"training, battles/s (batch {dual['train_batch']})", lambda r: f"{r['train_battles_per_s']:.2f}"),
            ("training peak GPU memory, GiB", lambda r: gib(r["train_peak_gib"])),
            (f"inference, battles/s (batch {dual['predict_batch']}, merged, bf16 runner)",
             lambda r: f"{r['predict_battles_per_s']:.2f}"),
            ("inference peak GPU memory, GiB", lambda r: gib(r["predict_peak_gib"]))]
    lines += [f"| {label} | {cell(dual)} | {cell(joint)} |" for label, cell in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry_run", action="store_true", help="a tiny decoder, a few steps, on the CPU")
    parser.add_argument("--output", default=None, help="JSON results (default: bench/results/gpu.json; none for "
                                                       "a dry run)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per phase (default 10; dry run 2)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 2; dry run 1)")
    parser.add_argument("--train_batch", type=int, default=None, help="battles per training step (default 4)")
    parser.add_argument("--predict_batch", type=int, default=None, help="battles per inference batch (default 16)")
    parser.add_argument("--prompt_tokens", type=int, default=None, help="default 256 (dry run 8)")
    parser.add_argument("--response_tokens", type=int, default=None, help="default 384 (dry run 24)")
    parser.add_argument("--lora_r", type=int, default=16)
    args = parser.parse_args(argv)
    small = args.dry_run
    for key, full, dry in (("steps", 10, 2), ("warmup", 2, 1), ("train_batch", 4, 2), ("predict_batch", 16, 4),
                           ("prompt_tokens", 256, 8), ("response_tokens", 384, 24)):
        if getattr(args, key) is None:
            setattr(args, key, dry if small else full)
    if not small and not torch.cuda.is_available():
        parser.error("no CUDA GPU here: run it on a GPU machine, or --dry_run to check the code path on the CPU")
    device = torch.device("cpu" if small else "cuda")
    torch.manual_seed(0)
    runs = [measure(name, joint, args, device) for name, joint in ARCHITECTURES.items()]
    results = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({platform.processor() or 'cpu'})",
        "dry_run": small, "decoder": "tiny (dry run)" if small else "Qwen2-0.5B shape, random weights",
        "lora_r": args.lora_r, "prompt_tokens": args.prompt_tokens, "response_tokens": args.response_tokens,
        "torch": torch.__version__, "runs": runs,
    }
    text = table(results)
    print(text)
    output = args.output or (None if small else str(ROOT / "bench" / "results" / "gpu.json"))
    if output:
        Path(output).write_text(json.dumps(results, indent=2) + "\n")
        Path(output).with_suffix(".md").write_text(f"`bench/gpu.sh` ({'dry run' if small else 'GPU'}):\n\n{text}\n")
    return results


if __name__ == "__main__":
    main()
