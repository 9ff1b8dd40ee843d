"""Which arithmetic an ArenaModel runs in, chosen in one place: `resolve_precision` picks, `prepare_model` applies.

Remote-code module: imports only torch, transformers and the standard library (copied next to config.json with
pipeline_arena.py, which imports it).

- `"auto"` (the default everywhere): bf16 on CPUs with native bf16 matrix units (AMX or AVX512-BF16), fp32 on
  other CPUs (there bf16 is emulated and far slower than fp32), bf16 on CUDA GPUs that support it, else fp16.
- `"fp32"`, `"bf16"`, `"fp16"`: forced; each runs everywhere (bf16 on a CPU without bf16 units is correct, slow).
- `"int8"`: forced only, CPU only: the encoder's Linear layers dynamically quantized (int8 weights, activations
  quantized per batch). Faster than fp32 on CPU but not exact (probabilities move by up to a few 1e-2), so `"auto"`
  never picks it.

>>> precision = resolve_precision("auto", torch.device("cpu"))     # "fp32" or "bf16", by the CPU  # doctest: +SKIP
>>> runner = prepare_model(model, precision)                        # run this one; `model` is left as it was
"""

from __future__ import annotations

import copy
import logging
import time
import warnings
from typing import Any

import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutput

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_logged: set[tuple[str, str, str]] = set()


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


def resolve_precision(requested: str = "auto", device: torch.device | str | None = None) -> str:
    """`"auto"` -> the fastest precision that stays within 2e-3 of fp32 in probability on `device` (CPU when None);
    a forced precision is checked and returned as it is. Logs the choice once per process."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision={requested!r}: expected one of {PRECISIONS}")
    device = torch.device(device if device is not None else "cpu")
    if requested == "int8" and device.type != "cpu":
        raise ValueError(f"precision='int8' runs on CPU only (dynamic quantization); this model is on {device}")
    chosen = requested
    if requested == "auto":
        if device.type == "cuda":
            chosen = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        elif device.type == "cpu":
            chosen = "bf16" if cpu_has_native_bf16() else "fp32"
        else:
            chosen = "fp32"
    key = (requested, str(device), chosen)
    if key not in _logged:
        _logged.add(key)
        reason = ""
        if requested == "auto" and device.type == "cpu":
            flags = ", ".join(name for name, on in cpu_flags().items() if on) or "none known"
            reason = f" (CPU features: {flags})"
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
    """
    if precision not in PRECISIONS or precision == "auto":
        raise ValueError(f"precision={precision!r}: expected a resolved one of {PRECISIONS[1:]}")
    encoder = model.encoder
    _use_sdpa(encoder)
    if precision == "int8":
        return _quantized_copy(model)
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


__all__ = ["PRECISIONS", "cpu_flags", "cpu_has_native_bf16", "prepare_model", "resolve_precision"]
