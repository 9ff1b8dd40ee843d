"""ArenaConfig: the configuration of the dual-tower arena preference model.

Remote-code module: imports only transformers and huggingface_hub (it is copied next to config.json on save).
"""


import math
from typing import Any, Literal

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PretrainedConfig
from transformers.configuration_utils import SubConfigSpec

LABELS = ("winner_model_a", "winner_model_b", "winner_tie")
# A fresh model's token budget per tower, capped at what its encoder can read (`max_length_limit`).
DEFAULT_MAX_LENGTH = 1024
MIN_MAX_LENGTH = 16
# A calibration temperature outside this range is a broken config, not a calibration: logits divided by 1e-45
# overflow to NaN probabilities.
TEMPERATURE_RANGE = (1e-2, 1e2)

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


@strict(accept_kwargs=True)
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
        pooling (`str`, *optional*, defaults to `"mean"`): `"mean"` (attention-mask weighted), `"cls"` (the first
            token), or `"last"` (the last non-padding token, found from the attention mask: for decoder LLMs, whose
            last token is the only one that has read the whole sequence).
        max_length (`int`, *optional*): token budget of each tower, special tokens included; at least 16 and at
            most what the encoder can read (`max_length_limit`: 512 for BERT-family encoders such as MiniLM, 4096
            for DeBERTa-v3's relative positions). Defaults to 1024, capped at that limit.
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
        pool_layers (`int`, *optional*, defaults to 1): pool the mean of the encoder's last `pool_layers` hidden
            layers instead of the last one only (1). Lower layers keep more of the surface of the text, which a
            frozen encoder's last layer (trained for sentence similarity) smooths away. A fresh model from
            `ArenaModel.from_encoder` defaults to 3.
        temperature (`float`, *optional*, defaults to 1.0): logits are divided by it (calibration fitted after
            training).
        classifier_dropout (`float`, *optional*, defaults to 0.0): dropout on the pooled embeddings.
        encoder_frozen (`bool`, *optional*): whether training kept the encoder's weights as loaded (train.py
            records it; `None` for a model it did not train).
        tokenizer_fingerprint (`str`, *optional*): sha256 of the tokenizer's vocabulary at save time
            (`encoding_arena.tokenizer_fingerprint`); a model is not served with another tokenizer.
        cross_encoder (`bool`, *optional*, defaults to `False`): a joint cross-encoder instead of the dual tower:
            the encoder reads one sequence per battle and order (prompt, the first-shown answer, the second; see
            `encoding_arena.encode_joint_battles`), `ArenaJointHead` gives 3 logits per order and the model's
            probabilities are the average of both orders' (mapped back to A/B): symmetric by construction. Needs
            `head="classify"`.
        lora (`dict`, *optional*): what LoRA adapters were trained and merged into the encoder's weights before
            saving (`r`, `alpha`, `dropout`, `target_modules`); a record for people, the weights are plain.
        relevance (`bool`, *optional*, defaults to `False`): with the classify head, content terms from the prompt
            and each answer encoded on their own (`encoding_arena.encode_relevance`): the cosine of the prompt and
            the answer, and of the last user turn and the last answer, plus `encoding_arena.ANSWER_FLAGS` (empty,
            cut off, repeating), per side, entering the A, B and tie logits symmetrically
            (`modeling_arena.ArenaRelevanceTerms`). They are content, not style: they stay in `content_logits`.
        relevance_max_length (`int`, *optional*, defaults to 256): token budget of each text the relevance terms
            encode.
        content_pairs_weight (`float`, *optional*, defaults to 0.0): training only. Weight of the label-free content
            pairs (`modeling_arena.content_pair_loss`: an answer beats an answer to another prompt of the batch,
            random and nearest, and beats its own empty, cut-off and repeated versions) added to the vote loss;
            0 turns them off.

    Example:

    ```python
    >>> from configuration_arena import ArenaConfig
    >>> config = ArenaConfig(head="rank")
    >>> config.encoder_config.model_type, config.id2label[2]
    ('deberta-v2', 'winner_tie')
    ```"""

    model_type = "arena-preference"
    sub_configs_defaults = {
        "encoder_config": SubConfigSpec(config_class=AutoConfig, model_type="deberta-v2",
                                        init_kwargs={k: v for k, v in DEBERTA_V3_BASE.items() if k != "model_type"}),
    }

    encoder_config: dict | PretrainedConfig | None = None
    head: Literal["classify", "rank"] = "classify"
    rank_loss: Literal["davidson", "mse"] = "davidson"
    pooling: Literal["mean", "cls", "last"] = "mean"
    max_length: int | None = None
    truncation: Literal["latest_turns", "head"] = "latest_turns"
    style_features: bool = True
    position_bias: bool = False
    pool_layers: int = 1
    temperature: float | int = 1.0
    classifier_dropout: float | int = 0.0
    encoder_frozen: bool | None = None
    tokenizer_fingerprint: str | None = None
    cross_encoder: bool = False
    lora: dict | None = None
    relevance: bool = False
    relevance_max_length: int = 256
    content_pairs_weight: float | int = 0.0

    def __post_init__(self, **kwargs: Any) -> None:
        if isinstance(self.encoder_config, dict) and "model_type" not in self.encoder_config:
            raise ValueError("ArenaConfig: encoder_config dict needs a 'model_type' (e.g. 'deberta-v2', 'bert')")
        kwargs.pop("num_labels", None)
        self.id2label = dict(enumerate(LABELS))
        self.label2id = {label: i for i, label in enumerate(LABELS)}
        super().__post_init__(**kwargs)
        if self.max_length is None:
            self.max_length = min(DEFAULT_MAX_LENGTH, max_length_limit(self.encoder_config) or DEFAULT_MAX_LENGTH)

    def validate_arena(self) -> None:
        """Part of `@strict`-powered validation: the token budget and the temperature."""
        check_max_length(self.max_length, self.encoder_config)
        if self.cross_encoder and self.head != "classify":
            raise ValueError(f"ArenaConfig: cross_encoder needs head='classify' (got head={self.head!r}): the joint "
                             "head gives three logits per order, no reward per response")
        low, high = TEMPERATURE_RANGE
        if isinstance(self.temperature, bool) or not (math.isfinite(self.temperature) and
                                                      low <= self.temperature <= high):
            raise ValueError(f"ArenaConfig: temperature={self.temperature} must be between {low} and {high}")


# Relative-only positions (DeBERTa-v3) put no table limit on the length, but attention's memory grows with its
# square: DeBERTa builds (L, L) relative-position tensors per layer, so one 200,000-token tower asked for 320 GB.
# The bound is this many times the position table the encoder was pretrained with (4096 for DeBERTa-v3's 512:
# about 0.8 GB of fp32 attention scores per layer and tower at 12 heads).
RELATIVE_LENGTH_FACTOR = 8


def max_length_limit(encoder_config: Any) -> int | None:
    """Tokens an encoder can read per tower: its position table for absolute positions (BERT, MiniLM); for
    relative-only positions (DeBERTa-v3 with position_biased_input=False), `RELATIVE_LENGTH_FACTOR` times it."""
    table = getattr(encoder_config, "max_position_embeddings", None)
    if getattr(encoder_config, "position_biased_input", True):
        return table
    return RELATIVE_LENGTH_FACTOR * table if isinstance(table, int) and table > 0 else None


def check_max_length(max_length: Any, encoder_config: Any) -> int:
    """The one rule for a tower's token budget (the config, train.py and the pipeline all ask it): an int of at
    least 16 that the encoder can read. Returns it; raises ValueError naming the limit."""
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < MIN_MAX_LENGTH:
        raise ValueError(f"max_length={max_length!r}: expected an int of at least {MIN_MAX_LENGTH} (tokens per tower)")
    limit = max_length_limit(encoder_config)
    if limit is not None and max_length > limit:
        relative = "" if getattr(encoder_config, "position_biased_input", True) else (
            " (relative positions: its attention's memory grows with the square of the length)")
        raise ValueError(f"max_length={max_length}: this {encoder_config.model_type} encoder reads at most {limit} "
                         f"tokens per tower{relative}; give max_length={limit} or less")
    return max_length


__all__ = ["ArenaConfig", "LABELS", "check_max_length", "max_length_limit"]
