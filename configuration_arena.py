"""ArenaConfig: the configuration of the dual-tower arena preference model.

Remote-code module: imports only transformers (it is copied next to config.json on save).
"""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, PretrainedConfig

LABELS = ("winner_model_a", "winner_model_b", "winner_tie")
HEADS = ("classify", "rank")
RANK_LOSSES = ("davidson", "mse")
POOLINGS = ("mean", "cls")
TRUNCATIONS = ("latest_turns", "head")

# DeBERTa-v3-base (microsoft/deberta-v3-base config.json); the architecture used when no encoder is given.
DEBERTA_V3_BASE: dict[str, Any] = {
    "model_type": "deberta-v2",
    "vocab_size": 128100,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 512,
    "type_vocab_size": 0,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-7,
    "relative_attention": True,
    "max_relative_positions": -1,
    "position_buckets": 256,
    "norm_rel_ebd": "layer_norm",
    "share_att_key": True,
    "pos_att_type": ["p2c", "c2p"],
    "position_biased_input": False,
    "pad_token_id": 0,
}


class ArenaConfig(PretrainedConfig):
    r"""Configuration of [`ArenaModel`]: which encoder reads the towers and which head compares them.

    Args:
        encoder_config (`dict` or `PretrainedConfig`, *optional*):
            Configuration of the shared encoder (any architecture `AutoModel` knows). A dict must carry
            `model_type`. Defaults to the DeBERTa-v3-base architecture.
        head (`str`, *optional*, defaults to `"classify"`):
            `"classify"`: A logit f(a, b), B logit f(b, a), tie logit from symmetric terms (see
            `modeling_arena.ArenaClassifyHead`), trained with cross-entropy.
            `"rank"`: Linear(H -> 1) per tower gives a reward; the three probabilities come from the reward gap.
        rank_loss (`str`, *optional*, defaults to `"davidson"`):
            With the rank head. `"davidson"`: softmax([d/2, -d/2, log nu]) with d = r_A - r_B and a learned
            nu > 0, trained by log loss (Bradley-Terry with ties). `"mse"`: regress d toward +1 / -1 / 0.
        pooling (`str`, *optional*, defaults to `"mean"`): `"mean"` (attention-mask weighted) or `"cls"`.
        max_length (`int`, *optional*, defaults to 1024): token budget of each tower, special tokens included.
        truncation (`str`, *optional*, defaults to `"latest_turns"`): how a long conversation is cut to
            `max_length` (see `encoding_arena.encode_battles`).
        style_features (`bool`, *optional*, defaults to `True`): feed response style features (length, markdown,
            empty answers, refusals; see `encoding_arena.STYLE_FEATURES`) to the head beside the pooled
            embeddings. With the classify head they enter the logits additively, so the model can also give a
            style-controlled prediction (`ArenaOutput.content_logits`).
        position_bias (`bool`, *optional*, defaults to `False`): with the classify head, learn a prior for the
            answer shown first (+p on the A logit, -p on the B logit). Off, the model is symmetric in A and B by
            construction: P(A wins | a, b) = P(B wins | b, a). Turn it on only for data whose A/B order itself
            carries information you want predicted (e.g. a judge who saw the answers in this order and favours
            one position).
        temperature (`float`, *optional*, defaults to 1.0): logits are divided by it (calibration fitted after
            training).
        classifier_dropout (`float`, *optional*, defaults to 0.0): dropout on the pooled embeddings.

    Example:

    ```python
    >>> from configuration_arena import ArenaConfig
    >>> config = ArenaConfig(head="rank")
    >>> config.encoder_config.model_type, config.id2label[2]
    ('deberta-v2', 'winner_tie')
    ```"""

    model_type = "arena-preference"

    # Declared as fields: transformers refuses to save undeclared attributes named like generation parameters
    # (max_length, temperature).
    encoder_config: Any = None
    head: str = "classify"
    rank_loss: str = "davidson"
    pooling: str = "mean"
    max_length: int = 1024
    truncation: str = "latest_turns"
    style_features: bool = True
    position_bias: bool = False
    temperature: float = 1.0
    classifier_dropout: float = 0.0

    def __init__(
        self,
        encoder_config: dict[str, Any] | PretrainedConfig | None = None,
        head: str = "classify",
        rank_loss: str = "davidson",
        pooling: str = "mean",
        max_length: int = 1024,
        truncation: str = "latest_turns",
        style_features: bool = True,
        position_bias: bool = False,
        temperature: float = 1.0,
        classifier_dropout: float = 0.0,
        **kwargs: Any,
    ) -> None:
        for name, value, allowed in (
            ("head", head, HEADS),
            ("rank_loss", rank_loss, RANK_LOSSES),
            ("pooling", pooling, POOLINGS),
            ("truncation", truncation, TRUNCATIONS),
        ):
            if value not in allowed:
                raise ValueError(f"ArenaConfig: {name}={value!r} is not one of {allowed}")
        if int(max_length) < 16:
            raise ValueError(f"ArenaConfig: max_length={max_length} is too small; need at least 16 tokens per tower")
        if not float(temperature) > 0:
            raise ValueError(f"ArenaConfig: temperature={temperature} must be > 0")

        if encoder_config is None:
            encoder_config = dict(DEBERTA_V3_BASE)
        if isinstance(encoder_config, dict):
            encoder_config = dict(encoder_config)
            if "model_type" not in encoder_config:
                raise ValueError("ArenaConfig: encoder_config dict needs a 'model_type' (e.g. 'deberta-v2', 'bert')")
            encoder_config = AutoConfig.for_model(**encoder_config)
        self.encoder_config = encoder_config
        self.head = head
        self.rank_loss = rank_loss
        self.pooling = pooling
        self.max_length = int(max_length)
        self.truncation = truncation
        self.style_features = bool(style_features)
        self.position_bias = bool(position_bias)
        self.temperature = float(temperature)
        self.classifier_dropout = float(classifier_dropout)

        kwargs["id2label"] = {i: label for i, label in enumerate(LABELS)}
        kwargs["label2id"] = {label: i for i, label in enumerate(LABELS)}
        kwargs.pop("num_labels", None)
        super().__init__(**kwargs)


__all__ = ["ArenaConfig", "LABELS"]
