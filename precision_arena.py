"""Which arithmetic an ArenaModel runs in, chosen in one place: `resolve_precision` picks, `prepare_model` applies.

Remote-code module: imports only torch, transformers and the standard library (copied next to config.json with
pipeline_arena.py, which imports it); onnx and onnxruntime only for `"onnx-fp32"`, when they are installed.

- `"auto"` (the default everywhere): bf16 on CPUs with native bf16 matrix units (AMX or AVX512-BF16); on other
  CPUs (there bf16 is emulated and far slower than fp32) `"onnx-fp32"` when onnx and onnxruntime are installed,
  else `"fp32"`; bf16 on CUDA GPUs that support it, else fp16.
- `"onnx-fp32"`: the encoder exported once to ONNX (cached, keyed by its weights: `onnx_cache_dir`), fused by ONNX
  Runtime's transformer optimizer and run in an ONNX Runtime CPU session; pooling and the head stay PyTorch fp32.
  The same fp32 arithmetic with fused attention, layer-norm and GELU kernels: probabilities within 1e-6 of PyTorch
  fp32, 2-4x as fast as PyTorch fp32 on an AVX2 CPU in our runs (bench/throughput.py). Each new session is checked
  against PyTorch on a probe batch, and `"auto"` falls back to `"fp32"` (with a warning) when the export or that
  check fails.
- `ARENA_AUTO_PRECISION=bf16|onnx-fp32|fp32` (environment): `"auto"` on a CPU resolves as on a CPU where that is
  the choice (bf16 as with AMX, onnx-fp32 as on AVX2 with onnxruntime, fp32 as without it), so a machine can test
  what another one would run; each still runs here (emulated bf16 is slow but correct). Forced precisions ignore it.
- `"fp32"`, `"bf16"`, `"fp16"`: forced; each runs everywhere (bf16 on a CPU without bf16 units is correct, slow).
- `"int8"`: forced only, CPU only: the encoder's Linear layers dynamically quantized (int8 weights, activations
  quantized per batch). Faster than fp32 on CPU but not exact (probabilities move by up to a few 1e-2), so `"auto"`
  never picks it.

>>> runner, precision = prepare_for(model, "auto")   # run `runner`; `model` is left as it was  # doctest: +SKIP

`prepare_for` = `resolve_precision` (the choice, from the device) + `prepare_model` (the runner) + the fallback.
Why a hand-written ONNX export: optimum-onnx, the Hugging Face exporter, pins transformers<4.58 (0.1.0, the newest
on PyPI), and this project needs transformers 5; `torch.onnx.export` and onnxruntime's own optimizer do the job.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutput

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "onnx-fp32", "bf16", "fp16", "int8")
AUTO_OVERRIDE_ENV = "ARENA_AUTO_PRECISION"  # makes "auto" on a CPU resolve as on another CPU (see the docstring)
AUTO_CPU_CHOICES = ("bf16", "onnx-fp32", "fp32")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
ONNX_EXPORT_VERSION = "1"  # bump when export_encoder changes the graph it writes: old exports are then not reused
ONNX_TOLERANCE = 1e-4  # max |hidden state difference| / max(1, max |hidden state|) on the probe batch
_logged: set[tuple[str, ...]] = set()


class OnnxUnavailable(RuntimeError):
    """precision="onnx-fp32" cannot run this encoder here: onnxruntime missing, the export failed, or the exported
    graph disagreed with PyTorch on the probe batch."""


def cpu_flags() -> dict[str, bool]:
    """The CPU features that decide the fast arithmetic, as torch sees them (False where torch cannot tell)."""
    queries = {"amx": "_is_amx_tile_supported", "avx512_bf16": "_is_avx512_bf16_supported",
               "avx512_vnni": "_is_vnni_supported", "avx2": "_is_avx2_supported"}
    flags = {}
    for name, query in queries.items():
        ask = getattr(torch.cpu, query, None)  # private helpers of torch.cpu; absent in some torch versions
        flags[name] = bool(ask()) if ask is not None else False
    return flags


def cpu_has_native_bf16() -> bool:
    """Does a bf16 matmul run on bf16 hardware here? The flags answer when torch has them; otherwise time it."""
    if hasattr(torch.cpu, "_is_amx_tile_supported") and hasattr(torch.cpu, "_is_avx512_bf16_supported"):
        flags = cpu_flags()
        return flags["amx"] or flags["avx512_bf16"]
    return _bf16_matmul_is_fast()


def _bf16_matmul_is_fast(size: int = 256) -> bool:
    """A tiny timed matmul: native bf16 is at least as fast as fp32; emulated bf16 is tens to hundreds of times
    slower. A few milliseconds, once per process."""
    def seconds(dtype: torch.dtype) -> float:
        a = torch.randn(size, size).to(dtype)
        a @ a  # warm-up
        start = time.perf_counter()
        for _ in range(3):
            a @ a
        return time.perf_counter() - start

    return seconds(torch.bfloat16) <= 1.5 * seconds(torch.float32)


def onnxruntime_available() -> bool:
    """Are onnx (the export) and onnxruntime (the session) installed?"""
    return all(importlib.util.find_spec(name) is not None for name in ("onnx", "onnxruntime"))


def auto_cpu_override() -> str | None:
    """What `ARENA_AUTO_PRECISION` makes `"auto"` pick on a CPU (None when unset)."""
    value = os.environ.get(AUTO_OVERRIDE_ENV, "").strip()
    if not value:
        return None
    if value not in AUTO_CPU_CHOICES:
        raise ValueError(f"{AUTO_OVERRIDE_ENV}={value!r}: expected one of {AUTO_CPU_CHOICES} (or unset)")
    return value


def resolve_precision(requested: str = "auto", device: torch.device | str | None = None) -> str:
    """`"auto"` -> the fastest precision that stays within 2e-3 of fp32 in probability on `device` (CPU when None):
    bf16 where the hardware has it, else ONNX Runtime fp32 where installed, else PyTorch fp32; a forced precision is
    checked and returned as it is. Logs the choice once per process."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision={requested!r}: expected one of {PRECISIONS}")
    device = torch.device(device if device is not None else "cpu")
    if requested in ("int8", "onnx-fp32") and device.type != "cpu":
        raise ValueError(f"precision={requested!r} runs on CPU only; this model is on {device}")
    chosen = requested
    if requested == "auto":
        if device.type == "cuda":
            chosen = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        elif device.type == "cpu":
            chosen = auto_cpu_override() or (
                "bf16" if cpu_has_native_bf16() else "onnx-fp32" if onnxruntime_available() else "fp32")
        else:
            chosen = "fp32"
    key = (requested, str(device), chosen)
    if key not in _logged:
        _logged.add(key)
        reason = ""
        if requested == "auto" and device.type == "cpu":
            flags = ", ".join(name for name, on in cpu_flags().items() if on) or "none known"
            reason = f" (CPU features: {flags})"
            if auto_cpu_override():
                reason += f" ({AUTO_OVERRIDE_ENV}={auto_cpu_override()})"
        logger.info("arena-preference precision: %s -> %s on %s%s", requested, chosen, device, reason)
    return chosen


class _FloatHiddenStates(nn.Module):
    """An encoder in bf16/fp16 whose hidden states (the last one, and every layer's when asked: the model may pool
    the mean of its last layers) come back in fp32, so that pooling and the head (fp32) see fp32 inputs:
    mask-weighted means over hundreds of tokens lose precision when summed in bf16."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.inner = encoder

    def forward(self, *args: Any, **kwargs: Any) -> BaseModelOutput:
        output = self.inner(*args, **kwargs)
        layers = output.hidden_states
        return BaseModelOutput(last_hidden_state=output.last_hidden_state.float(),
                               hidden_states=None if layers is None else tuple(h.float() for h in layers))

    def get_input_embeddings(self) -> nn.Module:
        return self.inner.get_input_embeddings()


def _use_sdpa(encoder: nn.Module) -> None:
    """Attention through torch's scaled_dot_product_attention where the architecture has it (BERT, MiniLM, ...;
    not DeBERTa-v2/v3 in transformers). Numerically the same function as the eager attention."""
    if getattr(encoder, "_supports_sdpa", False) and encoder.config._attn_implementation != "sdpa":
        encoder.set_attn_implementation("sdpa")


def prepare_model(model: nn.Module, precision: str) -> nn.Module:
    """The model to run for `precision` (a resolved one: not "auto"); `model` itself keeps its weights and dtype.

    - fp32: `model` itself (its encoder switched to SDPA attention where supported; cast to fp32 if it was not).
    - bf16 / fp16: a copy whose encoder weights are cast once (no autocast per op) and whose encoder returns fp32
      hidden states; pooling and the head are `model`'s own fp32 modules, shared, not copied. Costs the encoder's
      weights once more at half size. Later training of `model` does not reach the copy: prepare again.
    - int8: a copy whose encoder Linear layers are dynamically quantized (CPU).
    - onnx-fp32: a copy whose encoder is an ONNX Runtime session on the exported encoder (`export_encoder`, cached);
      the head is shared. Raises `OnnxUnavailable` when that cannot be done exactly (see `prepare_for`).
    """
    if precision not in PRECISIONS or precision == "auto":
        raise ValueError(f"precision={precision!r}: expected a resolved one of {PRECISIONS[1:]}")
    encoder = model.encoder
    _use_sdpa(encoder)
    if precision == "int8":
        return _quantized_copy(model)
    if precision == "onnx-fp32":
        return _onnx_runner(prepare_model(model, "fp32"))
    dtype = DTYPES[precision]
    if all(p.dtype == dtype for p in encoder.parameters() if p.is_floating_point()):
        return model if dtype == torch.float32 else _with_encoder(model, _FloatHiddenStates(encoder))
    # Map every encoder parameter to its cast copy before deepcopy: the fp32 encoder is never duplicated whole.
    memo = {id(p): nn.Parameter(p.detach().to(dtype), requires_grad=False)
            for p in encoder.parameters() if p.is_floating_point()}
    cast = copy.deepcopy(encoder, memo=memo).to(dtype).eval()
    return _with_encoder(model, cast if dtype == torch.float32 else _FloatHiddenStates(cast))


def _with_encoder(model: nn.Module, encoder: nn.Module) -> nn.Module:
    """A shallow-in-spirit copy of an ArenaModel: the given encoder, every other module and parameter shared."""
    shared = {id(model.encoder): encoder}
    shared.update({id(p): p for name, p in model.named_parameters() if not name.startswith("encoder.")})
    return copy.deepcopy(model, memo=shared).eval()


def _quantized_copy(model: nn.Module) -> nn.Module:
    linear = {id(p) for m in model.encoder.modules() if isinstance(m, nn.Linear) for p in m.parameters()}
    shared = {id(p): p for p in model.parameters() if id(p) not in linear}
    fast = copy.deepcopy(model, memo=shared).eval()
    with warnings.catch_warnings():  # torch points to torchao; torch.ao's dynamic quantization still works
        warnings.simplefilter("ignore")
        torch.ao.quantization.quantize_dynamic(fast.encoder, {nn.Linear}, dtype=torch.qint8, inplace=True)
    return fast


def prepare_for(model: nn.Module, requested: str = "auto",
                device: torch.device | str | None = None) -> tuple[nn.Module, str]:
    """`(runner, precision)`: `resolve_precision` then `prepare_model`. When `"auto"` chose `"onnx-fp32"` and it
    cannot run exactly here (`OnnxUnavailable`), PyTorch `"fp32"` instead, with a warning once per reason; a forced
    `"onnx-fp32"` raises."""
    precision = resolve_precision(requested, device)
    try:
        return prepare_model(model, precision), precision
    except OnnxUnavailable as problem:
        if requested != "auto":
            raise
        if ("fallback", str(problem)) not in _logged:
            _logged.add(("fallback", str(problem)))
            logger.warning("arena-preference precision: auto -> fp32 (PyTorch) instead of onnx-fp32: %s", problem)
        return prepare_model(model, "fp32"), "fp32"


# ------------------------------------------------------------------------------------------- ONNX Runtime, fp32
def weights_digest(module: nn.Module) -> str:
    """sha256 of a module's parameters and buffers (names, dtypes, shapes and values): the key of what is computed
    from them (an ONNX export, cached pooled vectors). About 1 s per GB; a folder's path or mtime would not notice
    retrained weights."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def onnx_cache_dir() -> Path:
    """Where exported encoders are kept: `$ARENA_ONNX_CACHE`, else `$XDG_CACHE_HOME/arena-preference/onnx` (by
    default ~/.cache/arena-preference/onnx). Not the model's own folder: a Hub snapshot is shared and read-only by
    convention, and the key follows the weights, so a retrained encoder gets its own export."""
    if os.environ.get("ARENA_ONNX_CACHE"):
        return Path(os.environ["ARENA_ONNX_CACHE"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser()
    return base / "arena-preference" / "onnx"


class _HiddenStates(nn.Module):
    """The exported graph: `(N, L)` input ids and mask -> `(N, L, H)` `ArenaModel.hidden_states` (the mean of the
    layers the model pools)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.hidden_states(input_ids, attention_mask)


def export_encoder(model: nn.Module, cache_dir: Path | None = None) -> Path:
    """The ONNX file of `model`'s encoder (fp32, fused by `onnxruntime.transformers.optimizer`), exported on first
    use into `cache_dir` (default `onnx_cache_dir()`) under a key of its weights, config and the library versions,
    written atomically (a folder renamed into place), so that concurrent processes and interrupted exports never
    leave a half-written file where a later run reads it."""
    import transformers

    try:  # optional; the try keeps it out of the imports transformers demands of remote code
        import onnxruntime
    except ImportError as err:
        raise OnnxUnavailable("onnxruntime is not installed") from err
    encoder = model.encoder
    key = hashlib.sha256("\n".join([
        weights_digest(encoder), encoder.config.to_json_string(), str(getattr(model.config, "pool_layers", 1)),
        torch.__version__, transformers.__version__, onnxruntime.__version__, ONNX_EXPORT_VERSION,
    ]).encode()).hexdigest()[:32]
    root = Path(cache_dir) if cache_dir is not None else onnx_cache_dir()
    final = root / key / "encoder.onnx"
    if final.is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    logger.info("arena-preference: exporting the encoder to ONNX once (cached in %s)", final.parent)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
    staging.chmod(0o755)  # mkdtemp's 0700 would hide a shared cache from other users
    try:
        _export(model, staging / "encoder.onnx")
        try:
            os.replace(staging, final.parent)
        except OSError:  # another process put the same export there first
            if not final.is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def _export(model: nn.Module, path: Path) -> None:
    try:  # optional, as in export_encoder
        from onnxruntime.transformers.optimizer import MODEL_TYPES, optimize_model
    except ImportError as err:
        raise OnnxUnavailable("onnxruntime is not installed") from err

    # ONNX Runtime's attention fusion recognises the eager attention graph, not the one SDPA exports to.
    copy_memo = {id(p): p for p in model.parameters()}  # the copy shares the weights: no second fp32 encoder
    eager = copy.deepcopy(model, memo=copy_memo).eval()
    if hasattr(eager.encoder, "set_attn_implementation"):
        eager.encoder.set_attn_implementation("eager")
    raw = path.with_name("raw.onnx")
    axes = {0: "batch", 1: "length"}
    example = (torch.ones(2, 16, dtype=torch.long), torch.ones(2, 16, dtype=torch.long))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's tracer warnings about Python control flow
        torch.onnx.export(_HiddenStates(eager), example, str(raw), input_names=["input_ids", "attention_mask"],
                          output_names=["hidden_states"], opset_version=17, dynamo=False,
                          dynamic_axes={"input_ids": axes, "attention_mask": axes, "hidden_states": axes})
    config = model.config.encoder_config
    logging.getLogger("onnxruntime").setLevel(logging.ERROR)
    # Unknown architectures get BERT's fusion patterns: a pattern that does not match leaves the graph as it was.
    model_type = config.model_type if config.model_type in MODEL_TYPES else "bert"
    fused = optimize_model(str(raw), model_type=model_type, num_heads=config.num_attention_heads,
                           hidden_size=config.hidden_size)
    fused.save_model_to_file(str(path))
    raw.unlink()


class OnnxRuntimeEncoder(nn.Module):
    """Stands in for an ArenaModel's `encoder`: the exported graph in an ONNX Runtime CPU session, with as many
    threads as torch uses. Its output is already the mean of the pooled layers: handed back as the only "layer",
    whose mean over the last `pool_layers` is itself."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        super().__init__()
        try:  # optional, as in export_encoder
            import onnxruntime
        except ImportError as err:
            raise OnnxUnavailable("onnxruntime is not installed") from err

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.path = Path(path)
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                output_hidden_states: bool = False, **unused: Any) -> BaseModelOutput:
        feeds = {"input_ids": input_ids.to(torch.long).cpu().numpy(),
                 "attention_mask": attention_mask.to(torch.long).cpu().numpy()}
        hidden = torch.from_numpy(self.session.run(None, feeds)[0])
        return BaseModelOutput(last_hidden_state=hidden, hidden_states=(hidden,) if output_hidden_states else None)

    def __deepcopy__(self, memo: dict) -> OnnxRuntimeEncoder:
        return self  # an InferenceSession cannot be copied; it is read-only, so copies share it


def _onnx_runner(model: nn.Module) -> nn.Module:
    """An eval-mode copy of `model` (fp32) whose encoder is an ONNX Runtime session, checked on a probe batch."""
    if not onnxruntime_available():
        raise OnnxUnavailable("onnx and onnxruntime are not installed (pip install onnx onnxruntime)")
    try:
        path = export_encoder(model)
        runner = _with_encoder(model, OnnxRuntimeEncoder(path))
    except Exception as error:  # any architecture the exporter or the optimizer cannot handle
        raise OnnxUnavailable(f"the ONNX export of this {model.config.encoder_config.model_type} encoder failed: "
                              f"{type(error).__name__}: {str(error)[:300]}") from error
    difference = _probe_difference(model, runner)
    if not difference <= ONNX_TOLERANCE:
        raise OnnxUnavailable(f"the exported encoder differs from PyTorch by {difference:.1e} (relative) on the probe "
                              f"batch; expected at most {ONNX_TOLERANCE:.0e}")
    return runner


def _probe_difference(model: nn.Module, runner: nn.Module) -> float:
    """Max |PyTorch - ONNX Runtime| hidden state at real (unmasked) tokens on two random towers, one padded,
    relative to the largest hidden state."""
    generator = torch.Generator().manual_seed(0)
    vocab = model.config.encoder_config.vocab_size
    input_ids = torch.randint(0, vocab, (2, 24), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 17:] = 0
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            expected = model.hidden_states(input_ids, attention_mask)
            got = runner.hidden_states(input_ids, attention_mask)
    finally:
        model.train(was_training)
    real = attention_mask.bool()
    scale = max(1.0, float(expected[real].abs().max()))
    return float((expected[real] - got[real]).abs().max()) / scale


__all__ = ["AUTO_OVERRIDE_ENV", "PRECISIONS", "auto_cpu_override", "OnnxRuntimeEncoder", "OnnxUnavailable", "cpu_flags", "cpu_has_native_bf16",
           "export_encoder", "onnx_cache_dir", "onnxruntime_available", "prepare_for", "prepare_model",
           "resolve_precision", "weights_digest"]
