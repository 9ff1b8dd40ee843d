import pytest
from huggingface_hub.errors import StrictDataclassError

from configuration_arena import LABELS, ArenaConfig, check_max_length


def test_defaults_are_deberta_v3_base_and_three_labels():
    config = ArenaConfig()
    enc = config.encoder_config
    assert (enc.model_type, enc.hidden_size, enc.num_hidden_layers, enc.vocab_size) == ("deberta-v2", 768, 12, 128100)
    assert enc.relative_attention and enc.pos_att_type == ["p2c", "c2p"] and not enc.position_biased_input
    assert config.id2label == {0: "winner_model_a", 1: "winner_model_b", 2: "winner_tie"}
    assert config.label2id == {label: i for i, label in enumerate(LABELS)}
    assert (config.head, config.rank_loss, config.pooling, config.max_length) == ("classify", "davidson", "mean", 1024)


def test_round_trip_through_json(tmp_path):
    config = ArenaConfig(encoder_config={"model_type": "bert", "hidden_size": 64, "num_hidden_layers": 1,
                                         "num_attention_heads": 2, "intermediate_size": 32},
                         head="rank", rank_loss="mse", pooling="cls", max_length=256, temperature=1.3)
    config.save_pretrained(tmp_path)
    loaded = ArenaConfig.from_pretrained(tmp_path)
    assert loaded.encoder_config.model_type == "bert" and loaded.encoder_config.hidden_size == 64
    assert (loaded.head, loaded.rank_loss, loaded.pooling, loaded.max_length, loaded.temperature) == (
        "rank", "mse", "cls", 256, 1.3)
    assert loaded.id2label[1] == "winner_model_b"


@pytest.mark.parametrize("kwargs, field", [
    ({"head": "regress"}, "head"), ({"rank_loss": "hinge"}, "rank_loss"), ({"pooling": "max"}, "pooling"),
    ({"truncation": "middle"}, "truncation"), ({"max_length": 4}, "max_length"), ({"temperature": 0}, "temperature"),
    ({"temperature": 1e-45}, "temperature"), ({"temperature": float("nan")}, "temperature"),
    ({"style_features": "no"}, "style_features"), ({"encoder_config": {"hidden_size": 8}}, "model_type"),
    ({"max_length": 4000, "encoder_config": {"model_type": "bert"}}, "max_length=4000: this bert encoder reads at most 512"),
])
def test_bad_values_name_the_field(kwargs, field):
    with pytest.raises((ValueError, StrictDataclassError), match=field):
        ArenaConfig(**kwargs)


def test_max_length_has_one_rule_and_a_default_the_encoder_can_read():
    bert = {"model_type": "bert", "hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
            "intermediate_size": 32}
    assert ArenaConfig(encoder_config=bert).max_length == 512  # 1024 capped at BERT's position table
    assert ArenaConfig().max_length == 1024  # DeBERTa-v3: relative positions, capped at 8 x 512 = 4096
    config = ArenaConfig(encoder_config=bert)
    assert check_max_length(512, config.encoder_config) == 512
    for bad in (513, 15, True, "64"):
        with pytest.raises(ValueError, match="max_length="):
            check_max_length(bad, config.encoder_config)


def test_the_encoder_flag_and_the_tokenizer_fingerprint_are_saved(tmp_path):
    ArenaConfig(head="rank", encoder_frozen=True, tokenizer_fingerprint="ab12").save_pretrained(tmp_path)
    loaded = ArenaConfig.from_pretrained(tmp_path)
    assert (loaded.encoder_frozen, loaded.tokenizer_fingerprint) == (True, "ab12")
