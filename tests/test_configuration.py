import pytest

from configuration_arena import LABELS, ArenaConfig


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
    ({"encoder_config": {"hidden_size": 8}}, "model_type"),
])
def test_bad_values_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        ArenaConfig(**kwargs)
