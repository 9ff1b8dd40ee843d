"""Throughput of the arena model on CPU: the seed's way (bench/seed_reference.py) against the project's fast paths.

One command, one run, side by side on the same real battles, the same weights and the same thread count:

    python bench/throughput.py                     # ~15 minutes on 2 cores; writes bench/results/throughput.{md,json}
    python bench/throughput.py --n_battles 8 --repeats 1 --train_pairs 4    # a smoke run (a few minutes)

Speed is measured with all paths taking turns, pass by pass, in one process (processes run minutes apart drift by
more than the differences being measured on a shared machine); probabilities and peak RSS come from each path run once in its own subprocess, so
that its peak RSS is its own. Inference paths report pairs/s (median of `--repeats` passes over the battles), the
log loss of their probabilities and its difference from the reference's, and the achieved FLOP/s
(counted from the shapes each forward pass really ran, padding included) as a fraction of what a large fp32
`torch.matmul` reaches in the same run. Training paths report pairs/s for forward + backward + AdamW step, on the
first `--train_pairs` battles (by default all of them: the same battles as inference). Under the table, a ceiling
line per mode bounds what any lossless fp32 path could reach (`ceiling`). The ONNX Runtime paths need onnx and
onnxruntime (the `dev` extra; bench/onnx_encoder.py).

Precision: the report starts with the CPU features that decide it (AMX, AVX512-BF16, AVX512-VNNI, AVX2) and what
`precision_arena.resolve_precision("auto")` picks here; the `auto` row is the pipeline as users get it (its
default precision), `pipeline` the same pipeline forced to fp32, `direct_bf16` the encoder cast to bf16 once.
On a CPU without bf16 units bf16 is emulated (hundreds of times slower than fp32): leave the bf16 rows out there.

Battles: every `--stride`-th of the first `--n_battles * --stride` rows of ../shared/data/arena_dev.csv (the first
83 rows are long Arena-140k battles, the next ones MT-Bench; the stride keeps both in the sample). Weights:
embedded:minilm-l6 with a classify head drawn with std 0.05 (seed 0): a freshly initialised head (std 0.02) gives
near-uniform probabilities, which would hide numeric differences between the paths.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "bench"))  # after the repo root: bench/leaderboard.py must not hide leaderboard.py
DEV_CSV = ROOT.parent / "shared" / "data" / "arena_dev.csv"
RESULTS = ROOT / "bench" / "results"
MAX_LENGTH = 512
THREADS = 2
# Pairs per batch in the fast inference paths and the pipeline: 1 is the fastest on this CPU (README, Performance).
BATCH = int(os.environ.get("ARENA_BENCH_BATCH", 1))

INFERENCE_PATHS = {
    "reference": "seed: towers padded to 512, two encoder calls, batch 2, fp32, input order, no_grad",
    "direct_unsorted": "model(): dynamic padding, batch B, input order, inference_mode",
    "direct_no_grad": "model(): length-sorted batches of B, fp32, no_grad",
    "direct_sorted": "model(): a call per side, each trimmed to its longest tower, length-sorted batches of B, fp32, "
                     "inference_mode",
    "direct_eager": "as direct_sorted, eager attention instead of SDPA",
    "direct_one_call": "as direct_sorted, both towers in one call, padded to the longer side (one_call_towers)",
    "direct_int8": "as direct_sorted, encoder Linear layers dynamically quantized to int8 (precision='int8')",
    "direct_bf16": "as direct_sorted, encoder weights cast to bf16 once, pooling and head fp32 (precision='bf16')",
    "direct_bf16_autocast": "as direct_sorted, bf16 autocast per op",
    "direct_compile": "as direct_sorted, torch.compile(dynamic=True) (compiled in the untimed warm-up pass)",
    "onnxruntime": "as direct_sorted, the encoder exported to ONNX and run by ONNX Runtime (fused attention, "
                   "layer-norm and GELU kernels), fp32",
    "onnxruntime_int8": "as onnxruntime, dynamically quantized (per-channel int8 weights)",
    "pipeline": "pipeline('arena-preference', precision='fp32'), batch_size=B, from raw battles (tokenization "
                "included)",
    "auto": "pipeline('arena-preference') as users get it: precision='auto' (the default), batch_size=B, from raw "
            "battles",
}
TRAINING_PATHS = {
    "train_reference": "seed: padded to 512, two encoder calls, batch 2, fp32, input order",
    "train_fast": "model(): a call per side, length-sorted batches within the reference's token budget, fp32",
    "train_one_call": "as train_fast, both towers in one call, padded to the longer side (one_call_towers)",
}
DEFAULT_PATHS = ["reference", "direct_unsorted", "direct_no_grad", "direct_sorted", "direct_eager", "direct_one_call",
                 "direct_int8", "direct_compile", "onnxruntime", "onnxruntime_int8", "pipeline", "auto",
                 "train_reference", "train_fast", "train_one_call"]
ONNX_FILES = {"onnxruntime": "encoder.onnx", "onnxruntime_int8": "encoder_int8.onnx"}


# ------------------------------------------------------------------------------------------------- shared setup
def load_battles(n: int, stride: int) -> list[dict]:
    """Rows 0, stride, 2*stride, ... of arena_dev.csv: {prompt, response_a, response_b, label} as turn lists."""
    from arena_dataset import load_arena

    data = load_arena(str(DEV_CSV)).select(range(0, n * stride, stride))
    return [{k: row[k] for k in ("prompt", "response_a", "response_b", "label")} for row in data]


def build_model_dir(workdir: Path) -> Path:
    import torch

    from arena_preference.model_loading import load_model
    from pipeline_arena import ArenaPreferencePipeline

    model, tokenizer = load_model("embedded:minilm-l6", max_length=MAX_LENGTH)
    torch.manual_seed(0)
    with torch.no_grad():  # every weight matrix of the head (whatever its layout), in parameter order
        for name, param in model.named_parameters():
            if not name.startswith("encoder.") and param.dim() >= 2:
                param.normal_(std=0.05)
    ArenaPreferencePipeline(model=model, tokenizer=tokenizer).save_pretrained(str(workdir / "model"))
    return workdir / "model"


def export_onnx(model_dir: Path, out_dir: Path) -> float:
    """The ONNX Runtime paths' graphs (bench/onnx_encoder.py), exported once for all workers; returns the seconds
    the export, fusion and quantization took (a one-off cost per model, not counted in pairs/s)."""
    import importlib.util

    missing = [name for name in ("onnx", "onnxruntime") if importlib.util.find_spec(name) is None]
    if missing:
        raise SystemExit(f"the onnxruntime paths need {' and '.join(missing)}: pip install -e '.[dev]'")
    from modeling_arena import ArenaModel
    from onnx_encoder import export_encoder

    start = time.perf_counter()
    export_encoder(ArenaModel.from_pretrained(model_dir), out_dir)
    return time.perf_counter() - start


def encoder_flops(n: int, length: int, config) -> float:
    """Multiply-adds x 2 of one encoder pass over `(n, length)` tokens (a BERT-style layer, counted from shapes):
    Q, K, V, O projections 4*H*H and the feed-forward 2*H*I per token, attention scores and mixing 2*L*H per
    token. Embedding lookups, norms and softmax are left out (small)."""
    hidden, inter, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    per_token = 4 * hidden * hidden + 2 * hidden * inter + 2 * length * hidden
    return 2.0 * layers * n * length * per_token


def matmul_peak(dtype_name: str, size: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of a large square torch.matmul (median of repeats): the machine's practical peak. Emulated bf16
    (no AMX / AVX512-BF16) runs at well under 1 GFLOP/s: it is timed on a 512^3 product there (about a second)."""
    import torch

    from precision_arena import cpu_has_native_bf16

    dtype = getattr(torch, dtype_name)
    if dtype == torch.bfloat16 and not cpu_has_native_bf16():
        size = 512
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    a @ b
    times = []
    for _ in range(repeats if dtype == torch.float32 else 1):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times)


# ------------------------------------------------------------------------------------------------ worker (child)
def quantized_copy(model):
    """An eval-mode copy of an ArenaModel whose encoder Linear layers compute in int8 (dynamic quantization:
    int8 weights, activations quantized per batch; CPU): `precision_arena.prepare_model(model, "int8")`. Everything
    else (embeddings, norms, heads) is shared with `model`, not copied."""
    from precision_arena import prepare_model

    return prepare_model(model, "int8")


def one_call_towers(model, ids_a, mask_a, ids_b, mask_b):
    """Both sides' towers through the encoder in ONE call, each side padded to the longer one (what
    `ArenaModel.encode_towers(one_call=True)` did before the model kept only a call per side): `(B, H)` pooled A
    and B. Fewer, larger kernels, against attention over the cross-side padding."""
    import torch
    import torch.nn.functional as F

    length = max(ids_a.shape[1], ids_b.shape[1])
    pad_id = model.config.encoder_config.pad_token_id or 0
    ids = torch.cat([F.pad(ids_a, (0, length - ids_a.shape[1]), value=pad_id),
                     F.pad(ids_b, (0, length - ids_b.shape[1]), value=pad_id)])
    mask = torch.cat([F.pad(mask_a, (0, length - mask_a.shape[1])), F.pad(mask_b, (0, length - mask_b.shape[1]))])
    pooled = model.encode(ids, mask)
    return pooled[: len(ids_a)], pooled[len(ids_a) :]


def one_call_forward(model, labels=None, **batch):
    """ArenaModel.forward with both towers in one encoder call (one_call_towers), then forward's own head and loss
    on the pooled towers."""
    pooled_a, pooled_b = one_call_towers(model, *(batch[k] for k in ("input_ids_a", "attention_mask_a",
                                                                     "input_ids_b", "attention_mask_b")))
    return model(pooled_a=pooled_a, pooled_b=pooled_b, style_a=batch.get("style_a"), style_b=batch.get("style_b"),
                 labels=labels)


def sorted_batches(features: dict, order: list[int], batch: int):
    return [order[i : i + batch] for i in range(0, len(order), batch)]


def length_order(features: dict) -> list[int]:
    n = len(features["input_ids_a"])
    return sorted(range(n), key=lambda i: -max(len(features["input_ids_a"][i]), len(features["input_ids_b"][i])))


def token_budget_batches(features: dict, order: list[int], budget: int) -> list[list[int]]:
    """Consecutive rows of `order` grouped so that pairs * longest tower <= budget tokens per side (the
    reference's own 2 x 512): peak activation memory never exceeds the reference's."""
    batches, current, longest = [], [], 0
    for i in order:
        length = max(len(features["input_ids_a"][i]), len(features["input_ids_b"][i]))
        if current and (len(current) + 1) * max(longest, length) > budget:
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, length)
    return batches + [current] if current else batches


def build_passes(paths: list[str], model_dir: str, battles_file: str, train_pairs: int, onnx_dir: str | None) -> dict:
    """path -> (run, pairs, FLOPs): `run()` does one pass of that path and returns the probabilities of every battle
    in input order (inference) or None (training: `train_pairs` pairs of forward + backward + AdamW step, on the
    path's own copy of the model). FLOPs are counted from the shapes the pass really runs, padding included."""
    import torch

    torch.set_num_threads(THREADS)
    from encoding_arena import ArenaCollator, encode_battles
    from modeling_arena import ArenaModel
    from pipeline_arena import ArenaPreferencePipeline
    from precision_arena import prepare_model
    from seed_reference import SEED_BATCH_PAIRS, seed_batches, seed_logits
    from transformers import AutoTokenizer

    battles = json.loads(Path(battles_file).read_text())
    model = ArenaModel.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    config = model.config.encoder_config
    collate = ArenaCollator(pad_token_id=tokenizer.pad_token_id)
    features = encode_battles(*([b[k] for b in battles] for k in ("prompt", "response_a", "response_b")),
                              tokenizer, MAX_LENGTH)
    rows = [{k: features[k][i] for k in features} for i in range(len(battles))]
    labels = torch.tensor([b["label"] for b in battles])
    reference_batches = list(seed_batches(features, MAX_LENGTH, tokenizer.pad_token_id))

    def shaped(batches, one_call=False):  # (index, collated batch) and the FLOPs of one forward pass over them
        collated = [(idx, collate([rows[i] for i in idx])) for idx in batches]
        if one_call:  # both sides padded to the batch's longest tower
            return collated, sum(encoder_flops(2 * len(idx), b["input_ids_a"].shape[1], config) for idx, b in collated)
        return collated, sum(encoder_flops(len(idx), int(b[f"attention_mask_{side}"].sum(-1).max()), config)
                             for idx, b in collated for side in "ab")

    passes: dict = {}
    for path in paths:
        if path == "reference":
            def run(batches=reference_batches):
                probs = [None] * len(battles)
                with torch.no_grad():
                    for *tensors, idx in batches:
                        for i, p in zip(idx, seed_logits(model, *tensors).softmax(-1).tolist()):
                            probs[i] = p
                return probs
            passes[path] = (run, len(battles), 2 * encoder_flops(len(battles), MAX_LENGTH, config))
        elif path.startswith("direct") or path in ONNX_FILES:
            order = length_order(features) if path != "direct_unsorted" else list(range(len(battles)))
            collated, flops = shaped(sorted_batches(features, order, BATCH), one_call=path == "direct_one_call")
            runner = quantized_copy(model) if path == "direct_int8" else model
            if path == "direct_bf16":
                runner = prepare_model(model, "bf16")
            if path == "direct_eager":
                runner = copy.deepcopy(model)
                runner.encoder.set_attn_implementation("eager")
            if path == "direct_one_call":
                runner = partial(one_call_forward, model)
            if path in ONNX_FILES:
                from onnx_encoder import onnx_runner

                runner = onnx_runner(model, next(Path(onnx_dir).glob(f"*/{ONNX_FILES[path]}")), THREADS)
            if path == "direct_compile":
                runner = torch.compile(model, dynamic=True)
            context = torch.no_grad if path == "direct_no_grad" else torch.inference_mode
            autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=path == "direct_bf16_autocast")

            def run(collated=collated, runner=runner, context=context, autocast=autocast):
                probs = [None] * len(battles)
                with context(), autocast:
                    for idx, batch in collated:
                        for i, p in zip(idx, runner(**batch).logits.float().softmax(-1).tolist()):
                            probs[i] = p
                return probs
            passes[path] = (run, len(battles), flops)
        elif path in ("pipeline", "auto"):
            judge = ArenaPreferencePipeline(model=model, tokenizer=tokenizer,
                                            **({"precision": "fp32"} if path == "pipeline" else {}))
            inputs = [{k: b[k] for k in ("prompt", "response_a", "response_b")} for b in battles]
            _, flops = shaped(sorted_batches(features, length_order(features), BATCH))

            def run(judge=judge, inputs=inputs):
                return [[r[k] for k in ("winner_model_a", "winner_model_b", "winner_tie")]
                        for r in judge(inputs, batch_size=BATCH)]
            passes[path] = (run, len(battles), flops)
        else:  # training, on its own copy of the model
            trained = copy.deepcopy(model).train()
            optimizer = torch.optim.AdamW(trained.parameters(), lr=1e-5)

            def step(loss, optimizer=optimizer):
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)

            if path == "train_reference":
                batches = reference_batches[: -(-train_pairs // SEED_BATCH_PAIRS)]

                def run(batches=batches, trained=trained, step=step):
                    for *tensors, idx in batches:
                        step(torch.nn.functional.cross_entropy(seed_logits(trained, *tensors), labels[idx]))
                pairs = sum(len(b[-1]) for b in batches)
                passes[path] = (run, pairs, 3 * 2 * encoder_flops(pairs, MAX_LENGTH, config))
            else:
                subset = {k: v[:train_pairs] for k, v in features.items()}
                collated, flops = shaped(token_budget_batches(subset, length_order(subset),
                                                              SEED_BATCH_PAIRS * MAX_LENGTH),
                                         one_call=path == "train_one_call")
                forward = partial(one_call_forward, trained) if path == "train_one_call" else trained

                def run(collated=collated, forward=forward, step=step):
                    for idx, batch in collated:
                        step(forward(**batch, labels=labels[idx]).loss)
                passes[path] = (run, len(subset["input_ids_a"]), 3 * flops)
    return passes


def interleaved_rates(paths: list[str], model_dir: str, battles_file: str, repeats: int, train_pairs: int,
                      onnx_dir: str | None) -> dict:
    """pairs/s and FLOP/s of every path, measured in ONE process with the paths taking turns, pass by pass.

    In separate processes minutes apart the same path drifted by more than the differences being measured (clock,
    other jobs); taking turns exposes every path to the same drift, so the ratios hold. Each path: one warm-up
    pass (and compilation), then the median of `repeats` passes.
    """
    passes = build_passes(paths, model_dir, battles_file, train_pairs, onnx_dir)
    times: dict[str, list[float]] = {path: [] for path in passes}
    for round_ in range(repeats + 1):  # round 0 warms every path up, untimed
        for path, (run, _, _) in passes.items():
            start = time.perf_counter()
            run()
            if round_:
                times[path].append(time.perf_counter() - start)
    return {path: {"pairs_per_s": pairs / statistics.median(times[path]),
                   "flops_per_s": flops / statistics.median(times[path]), "pass_s": times[path]}
            for path, (_, pairs, flops) in passes.items()}


def probabilities_and_memory(path: str, model_dir: str, battles_file: str, train_pairs: int,
                             onnx_dir: str | None) -> dict:
    """One pass of one path in this (fresh) process: its probabilities and its peak RSS."""
    run, _, _ = build_passes([path], model_dir, battles_file, train_pairs, onnx_dir)[path]
    probs = run()
    result = {"probs": probs} if probs is not None else {}
    return result | {"peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's peak resident set size. Linux's VmHWM, not getrusage's ru_maxrss: a child started by
    fork/vfork + exec inherits the parent's high-water mark in ru_maxrss, so every worker would report at least the
    driver's RSS (the figures of earlier runs of this benchmark did: the same 575 MB for every inference path)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ----------------------------------------------------------------------------------------------- parent (driver)
def log_loss(probs: list[list[float]], labels: list[int]) -> float:
    import math

    return -sum(math.log(max(p[y], 1e-15)) for p, y in zip(probs, labels)) / len(labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n_battles", type=int, default=16)
    parser.add_argument("--stride", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train_pairs", type=int, default=16,
                        help="pairs per training measurement: the first N of the inference battles")
    parser.add_argument("--paths", nargs="*", default=DEFAULT_PATHS,
                        choices=[*INFERENCE_PATHS, *TRAINING_PATHS])
    parser.add_argument("--batch_size", type=int, default=BATCH, help="pairs per batch, fast inference paths")
    parser.add_argument("--out", default=str(RESULTS / "throughput.md"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--model_dir", help=argparse.SUPPRESS)
    parser.add_argument("--battles_file", help=argparse.SUPPRESS)
    parser.add_argument("--onnx_dir", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker == "interleaved":
        print(json.dumps(interleaved_rates(args.paths, args.model_dir, args.battles_file, args.repeats,
                                           args.train_pairs, args.onnx_dir)))
        return
    if args.worker:
        print(json.dumps(probabilities_and_memory(args.worker, args.model_dir, args.battles_file, args.train_pairs,
                                                  args.onnx_dir)))
        return

    import torch

    from precision_arena import cpu_flags, resolve_precision

    torch.set_num_threads(THREADS)
    flags, precision = cpu_flags(), resolve_precision("auto")
    print(f"CPU: {describe_flags(flags)}; precision='auto' picks {precision}", flush=True)
    started, load = time.time(), os.getloadavg()
    env = {**os.environ, "ARENA_BENCH_BATCH": str(args.batch_size), "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": str(THREADS)}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        battles = load_battles(args.n_battles, args.stride)
        (workdir / "battles.json").write_text(json.dumps(battles))
        model_dir = build_model_dir(workdir)
        if any(path in ONNX_FILES for path in args.paths):
            onnx_seconds = export_onnx(model_dir, workdir / "onnx")
            common_onnx = ["--onnx_dir", str(workdir / "onnx")]
        else:
            onnx_seconds, common_onnx = None, []
        peak = {name: matmul_peak(name) for name in ("float32", "bfloat16")}
        common = ["--model_dir", str(model_dir), "--battles_file", str(workdir / "battles.json"),
                  "--train_pairs", str(args.train_pairs), *common_onnx]

        def worker(name: str, *extra: str) -> dict:
            proc = subprocess.run([sys.executable, __file__, "--worker", name, *common, *extra], capture_output=True,
                                  text=True, env=env, cwd=ROOT)
            if proc.returncode != 0:
                raise RuntimeError(f"{name} failed:\n{proc.stderr[-3000:]}")
            return json.loads(proc.stdout.strip().splitlines()[-1])

        # Speed: all paths taking turns in one process. Probabilities and peak RSS: each path in its own process
        # (one pass), so that its peak RSS is its own.
        rates = worker("interleaved", "--repeats", str(args.repeats), "--paths", *args.paths)
        results = {}
        for path in args.paths:
            results[path] = worker(path) | rates[path]
            print(f"{path}: {results[path]['pairs_per_s']:.3f} pairs/s, peak RSS {results[path]['peak_rss_mb']:.0f} MB",
                  flush=True)
        peak["float32_before"], peak["float32_after"] = peak["float32"], matmul_peak("float32")
        peak["float32"] = max(peak["float32_before"], peak["float32_after"])  # practical peak: the faster of the two
    for path in ("auto", "pipeline"):
        if path in results:
            results[path]["precision"] = precision if path == "auto" else "fp32"
    machine = {"cpu_flags": flags, "precision": precision, "load_average_start": load,
               "load_average_end": os.getloadavg()}
    labels = [b["label"] for b in battles]
    lengths = _tower_lengths(battles, model_dir=None)
    report = render(args, results, peak, labels, lengths, time.time() - started, onnx_seconds, machine)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(report)
    Path(args.out).with_suffix(".json").write_text(json.dumps(
        {"args": vars(args), "machine": machine, "peak_flops": peak, "results": results}, indent=1))
    print(report)


def describe_flags(flags: dict[str, bool]) -> str:
    names = {"amx": "AMX", "avx512_bf16": "AVX512-BF16", "avx512_vnni": "AVX512-VNNI", "avx2": "AVX2"}
    return ", ".join(f"{names[k]} {'yes' if v else 'no'}" for k, v in flags.items())


def _tower_lengths(battles: list[dict], model_dir=None) -> tuple[float, float]:
    """Mean real tower length and the fraction of max_length padding the reference computes."""
    from arena_preference.model_loading import load_encoder
    from encoding_arena import encode_battles

    _, tokenizer = load_encoder("embedded:minilm-l6")
    enc = encode_battles(*([b[k] for b in battles] for k in ("prompt", "response_a", "response_b")), tokenizer,
                         MAX_LENGTH)
    lengths = [len(x) for key in ("input_ids_a", "input_ids_b") for x in enc[key]]
    return sum(lengths) / len(lengths), 1 - sum(lengths) / (len(lengths) * MAX_LENGTH)


def ceiling(name: str, slow_path: str, fast_path: str, results: dict, peak: float) -> str:
    """The most a lossless fp32 path can gain on these battles: it must still compute the FLOPs of the fast path's
    real (unpadded) towers, and at best at 100% of the matmul peak, where the reference runs at its measured
    fraction of it."""
    slow, fast = results[slow_path], results[fast_path]
    flops_ratio = (slow["flops_per_s"] / slow["pairs_per_s"]) / (fast["flops_per_s"] / fast["pairs_per_s"])
    efficiency = slow["flops_per_s"] / peak
    return (f"{name} ceiling in fp32: the reference computes {flops_ratio:.2f}x the FLOPs per pair of {fast_path} "
            f"(padding) at {efficiency:.0%} of the matmul peak, so a lossless fp32 path running at 100% of the peak "
            f"would reach {flops_ratio / efficiency:.2f}x the reference; {fast_path} reaches "
            f"{fast['pairs_per_s'] / slow['pairs_per_s']:.2f}x.")


def render(args, results: dict, peak: dict, labels: list[int], lengths: tuple, seconds: float,
           onnx_seconds: float | None, machine: dict) -> str:
    import platform

    import torch

    ref = results.get("reference")
    ref_train = results.get("train_reference")
    ref_loss = log_loss(ref["probs"], labels) if ref else None
    lines = [
        f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"CPU capability {torch.backends.cpu.get_cpu_capability()}, {THREADS} threads; "
        f"{os.cpu_count()} cores visible (shared with other jobs: compare ratios, not absolute figures); load "
        f"average {machine['load_average_start'][0]:.1f} at the start, {machine['load_average_end'][0]:.1f} at the "
        "end.",
        f"CPU features: {describe_flags(machine['cpu_flags'])}; precision='auto' (the pipeline's default) picks "
        f"**{machine['precision']}** here.",
        f"fp32 matmul peak (2048^3): {peak['float32_before'] / 1e9:.1f} GFLOP/s before the paths, "
        f"{peak['float32_after'] / 1e9:.1f} after; bf16 matmul: {peak['bfloat16'] / 1e9:.2f} GFLOP/s.",
        f"Battles: {len(labels)} (rows 0, {args.stride}, ... of arena_dev.csv); mean tower length "
        f"{lengths[0]:.0f} tokens, so {lengths[1]:.0%} of the reference's 512-token towers is padding. "
        f"embedded:minilm-l6, max_length {MAX_LENGTH}; fast inference batch B = {args.batch_size} pairs; medians of "
        f"{args.repeats} passes, the paths taking turns in one process; the % of peak uses the faster matmul figure. Run took {seconds:.0f} s.",
        "",
        "| path | what it does | pairs/s | vs reference | log loss (diff vs ref) | max abs dP | peak RSS MB "
        "| GFLOP/s (% of fp32 matmul peak) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for path, r in results.items():
        training = path in TRAINING_PATHS
        base = ref_train if training else ref
        ratio = f"{r['pairs_per_s'] / base['pairs_per_s']:.2f}x" if base else "-"
        if "probs" in r and ref:
            loss = log_loss(r["probs"], labels)
            diff = max(abs(p - q) for a, b in zip(r["probs"], ref["probs"]) for p, q in zip(a, b))
            quality = f"{loss:.4f} ({loss - ref_loss:+.4f})"
            dp = f"{diff:.1e}"
        else:
            quality, dp = "-", "-"
        describe = (TRAINING_PATHS if training else INFERENCE_PATHS)[path]
        lines.append(
            f"| {path} | {describe} | {r['pairs_per_s']:.2f} | {ratio} | {quality} | {dp} | {r['peak_rss_mb']:.0f} "
            f"| {r['flops_per_s'] / 1e9:.1f} ({r['flops_per_s'] / peak['float32']:.0%}) |"
        )
    if "pipeline" in results and "direct_sorted" in results:
        ratio = results["pipeline"]["pairs_per_s"] / results["direct_sorted"]["pairs_per_s"]
        lines += ["", "Pipeline end to end (tokenization, collation and output dicts included) vs the model called "
                  f"directly on the same length-sorted batches (direct_sorted): {ratio:.2f}x its speed."]
    modes = (("Inference", "reference", "direct_sorted"), ("Training", "train_reference", "train_fast"))
    for name, slow, fast in modes:
        if slow in results and fast in results:
            lines += ["", ceiling(name, slow, fast, results, peak["float32"])]
    if onnx_seconds is not None:
        lines += ["", "ONNX export, fusion and int8 quantization (once per model, not timed above): "
                  f"{onnx_seconds:.0f} s."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
