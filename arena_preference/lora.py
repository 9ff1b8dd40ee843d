"""LoRA on the encoder of an ArenaModel, through peft (the `llm` extra), merged away before the model is saved.

    apply_lora(model, r=16)      # the encoder's weights frozen, low-rank adapters on its linear layers train
    ...train...
    merge_lora(model)            # W + (alpha / r) B A written into the weights; the encoder is a plain model again

The saved repo holds merged weights only: loading it needs torch and transformers, neither peft nor this project.
The head (and the style terms) train fully; only the encoder is adapted. peft is imported here and nowhere in the
remote-code modules, which transformers scans for imports when it loads a model.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger("train")

# The linear layers adapted by default, by architecture: attention and MLP projections (what the LLM solutions of
# the Kaggle LMSYS competition adapted). Others: peft's "all-linear" (every Linear of the encoder).
_DECODER_LINEARS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
DEFAULT_TARGET_MODULES: dict[str, list[str]] = {
    **{name: _DECODER_LINEARS for name in ("llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2",
                                           "gemma3_text", "olmo2", "granite")},
    "phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
    "bert": ["query", "key", "value", "dense"],
    "deberta-v2": ["query_proj", "key_proj", "value_proj", "dense"],
}
INSTALL_HINT = "pip install 'arena-preference[llm]' (or pip install peft)"


def _peft() -> Any:
    try:
        import peft
    except ImportError as err:
        raise ImportError(f"--lora_r needs peft: {INSTALL_HINT}") from err
    return peft


def target_modules(encoder_config: Any, given: str | list[str] | None = None) -> str | list[str]:
    """The module names LoRA adapts: `given` (a list, or a comma-separated string; "all-linear" for every Linear),
    else the architecture's default from `DEFAULT_TARGET_MODULES`, else "all-linear"."""
    if given:
        names = [n.strip() for n in given.split(",")] if isinstance(given, str) else list(given)
        names = [n for n in names if n]
        return "all-linear" if names == ["all-linear"] else names
    return DEFAULT_TARGET_MODULES.get(getattr(encoder_config, "model_type", None), "all-linear")


def apply_lora(model: Any, r: int, alpha: float | None = None, dropout: float = 0.05,
               modules: str | list[str] | None = None, base_dtype: Any = None) -> dict[str, Any]:
    """Wrap `model.encoder` in a peft LoRA model, in place: the encoder's own weights stop training, adapters of
    rank `r` (scaled by `alpha / r`; `alpha` defaults to 2r) train on `modules` (see `target_modules`), the rest of
    the model (the head) trains as before. Returns what was applied (also kept in `model.config.lora`).

    `base_dtype` (e.g. torch.bfloat16, what train.py passes under --bf16) casts the frozen encoder weights first:
    half the memory of float32 weights plus autocast's bf16 copies of them; the adapters and the head stay float32
    (peft keeps adapters in float32), and `merge_lora` merges in float32.
    """
    peft = _peft()
    if base_dtype is not None:
        model.encoder.to(base_dtype)
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise ValueError(f"--lora_r {r!r}: expected a positive int (the adapters' rank, e.g. 8 or 16)")
    if not 0 <= dropout < 1:
        raise ValueError(f"--lora_dropout {dropout!r}: expected a number in [0, 1)")
    targets = target_modules(model.config.encoder_config, modules)
    lora_config = peft.LoraConfig(r=r, lora_alpha=alpha if alpha is not None else 2 * r, lora_dropout=dropout,
                                  target_modules=targets, bias="none")
    try:
        model.encoder = peft.get_peft_model(model.encoder, lora_config)
    except ValueError as err:  # peft: "Target modules {...} not found in the base model"
        raise ValueError(f"--lora_target_modules: {' '.join(str(err).split())}") from None
    # With (reentrant) gradient checkpointing, a checkpointed layer whose inputs need no gradient gives its adapters
    # none: the frozen embeddings' output must ask for one.
    model.encoder.enable_input_require_grads()
    record = {"r": r, "alpha": float(lora_config.lora_alpha), "dropout": dropout,
              "target_modules": targets if isinstance(targets, str) else sorted(targets), "merged": False}
    model.config.lora = record
    trainable = sum(p.numel() for n, p in model.encoder.named_parameters() if p.requires_grad)
    logger.info("LoRA r=%d alpha=%g on %s: %s adapter parameters train in the encoder", r, record["alpha"],
                record["target_modules"], f"{trainable:,}")
    return record


def is_lora(model: Any) -> bool:
    """Whether `model.encoder` still carries (unmerged) peft adapters."""
    return hasattr(getattr(model, "encoder", None), "merge_and_unload")


def merge_lora(model: Any) -> bool:
    """Write the adapters into the encoder's weights and drop peft's wrapper, in place: the model's state dict is
    a plain ArenaModel's again (no `lora_` or `base_layer` keys), what `save_pretrained` writes and what loads
    without peft. Returns whether there was anything to merge."""
    if not is_lora(model):
        return False
    # In float32 (the head's dtype): a bf16 base gets its float32 update without rounding it to bf16, and the saved
    # model is float32 throughout, its arithmetic chosen when it is served (precision_arena).
    model.encoder.to(next(p.dtype for n, p in model.named_parameters() if not n.startswith("encoder.")))
    model.encoder = model.encoder.merge_and_unload()
    if getattr(model.config, "lora", None):
        model.config.lora = {**model.config.lora, "merged": True}
    return True


__all__ = ["DEFAULT_TARGET_MODULES", "apply_lora", "is_lora", "merge_lora", "target_modules"]
