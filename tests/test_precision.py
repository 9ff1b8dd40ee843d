"""precision_arena: the dispatch decision (CPU flags mocked), the forced modes, and the exactness guard."""

from __future__ import annotations

import logging

import pytest
import torch
from conftest import BATTLES
from transformers import AutoModel, BertConfig

import precision_arena
from encoding_arena import STYLE_FEATURES
from modeling_arena import ArenaModel
from pipeline_arena import ArenaPreferencePipeline
from precision_arena import cpu_flags, prepare_model, resolve_precision

CPU_QUERIES = ("_is_amx_tile_supported", "_is_avx512_bf16_supported", "_is_vnni_supported", "_is_avx2_supported")
# Head weights drawn wider than the seed's 0.02, so that probabilities move with the towers and a precision error
# shows in them (a fresh head gives near-uniform probabilities, which would hide it).
HEAD_STD = 0.3


@pytest.fixture(autouse=True)
def _auto_as_on_this_cpu(monkeypatch):
    """These tests mock the CPU: the override that CI sets for other test files would hide the mocked flags."""
    monkeypatch.delenv(precision_arena.AUTO_OVERRIDE_ENV, raising=False)


def mock_cpu(monkeypatch, amx=False, avx512_bf16=False, vnni=False, avx2=True):
    for query, value in zip(CPU_QUERIES, (amx, avx512_bf16, vnni, avx2)):
        monkeypatch.setattr(torch.cpu, query, lambda value=value: value, raising=False)


def widen_head(model: ArenaModel, seed: int = 0) -> ArenaModel:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if not name.startswith("encoder."):
                param.copy_(torch.randn(param.shape, generator=generator) * HEAD_STD)
    return model.eval()


@pytest.fixture()
def tiny_bert(tiny_tokenizer):
    """A tiny BERT-family ArenaModel built with eager attention: the architecture that has SDPA."""
    config = BertConfig(vocab_size=len(tiny_tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=128, pad_token_id=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        encoder = AutoModel.from_config(config, attn_implementation="eager")
        return widen_head(ArenaModel.from_encoder(encoder, max_length=64))


def probabilities(model, batch) -> torch.Tensor:
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.inference_mode():
        return model(**inputs).logits.float().softmax(-1)


# ------------------------------------------------------------------------------------------------------ dispatch
@pytest.mark.parametrize("onnxruntime", [True, False])
@pytest.mark.parametrize("flags, expected", [
    ({"amx": True}, "bf16"),
    ({"avx512_bf16": True, "vnni": True}, "bf16"),
    ({"vnni": True}, "fp32"),  # AVX512-VNNI speeds up int8, not bf16
    ({}, "fp32"),  # AVX2 only: bf16 is emulated there, hundreds of times slower than fp32
])
def test_auto_picks_bf16_only_on_cpus_with_bf16_units(monkeypatch, flags, expected, onnxruntime):
    mock_cpu(monkeypatch, **flags)
    monkeypatch.setattr(precision_arena, "onnxruntime_available", lambda: onnxruntime)
    if expected == "fp32" and onnxruntime:
        expected = "onnx-fp32"  # the same fp32 arithmetic, run by ONNX Runtime where it is installed
    assert resolve_precision("auto", "cpu") == expected
    assert resolve_precision() == expected  # the CPU by default


@pytest.mark.parametrize("override", ["bf16", "onnx-fp32", "fp32"])
@pytest.mark.parametrize("flags", [{"amx": True}, {}])
def test_the_environment_makes_auto_resolve_as_on_another_cpu(monkeypatch, caplog, override, flags):
    mock_cpu(monkeypatch, **flags)
    monkeypatch.setattr(precision_arena, "onnxruntime_available", lambda: True)
    monkeypatch.setattr(precision_arena, "_logged", set())
    monkeypatch.setenv("ARENA_AUTO_PRECISION", override)
    with caplog.at_level(logging.INFO, logger="precision_arena"):
        assert resolve_precision("auto", "cpu") == override
    assert f"ARENA_AUTO_PRECISION={override}" in caplog.text
    assert resolve_precision("fp32", "cpu") == "fp32"  # a forced precision ignores it
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision("auto", "cuda") == "fp16"  # it speaks for CPUs only


def test_a_bad_override_is_refused_by_name(monkeypatch):
    monkeypatch.setenv("ARENA_AUTO_PRECISION", "int8")
    with pytest.raises(ValueError, match=r"ARENA_AUTO_PRECISION='int8': expected one of \('bf16', 'onnx-fp32', 'fp32'\)"):
        resolve_precision("auto", "cpu")


def test_without_torchs_flags_a_timed_matmul_decides(monkeypatch):
    for query in CPU_QUERIES:
        monkeypatch.delattr(torch.cpu, query, raising=False)
    monkeypatch.setattr(precision_arena, "_bf16_matmul_is_fast", lambda: True)
    assert resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(precision_arena, "_bf16_matmul_is_fast", lambda: False)
    monkeypatch.setattr(precision_arena, "onnxruntime_available", lambda: False)
    assert resolve_precision("auto", "cpu") == "fp32"
    assert cpu_flags() == {"amx": False, "avx512_bf16": False, "avx512_vnni": False, "avx2": False}


def test_the_timed_matmul_runs():
    assert isinstance(precision_arena._bf16_matmul_is_fast(size=32), bool)


@pytest.mark.parametrize("bf16_supported, expected", [(True, "bf16"), (False, "fp16")])
def test_auto_on_a_gpu_is_half_precision(monkeypatch, bf16_supported, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16_supported)
    assert resolve_precision("auto", torch.device("cuda", 0)) == expected


@pytest.mark.parametrize("forced", ["fp32", "onnx-fp32", "bf16", "fp16", "int8"])
def test_forced_precisions_are_kept_whatever_the_cpu(monkeypatch, forced):
    mock_cpu(monkeypatch, amx=True)
    assert resolve_precision(forced, "cpu") == forced


def test_bad_requests_fail_clearly():
    with pytest.raises(ValueError, match="expected one of"):
        resolve_precision("float32")
    for cpu_only in ("int8", "onnx-fp32"):
        with pytest.raises(ValueError, match="CPU only"):
            resolve_precision(cpu_only, "cuda")
    with pytest.raises(ValueError, match="resolved"):
        prepare_model(torch.nn.Module(), "auto")


def test_the_choice_is_logged_once(monkeypatch, caplog):
    mock_cpu(monkeypatch, amx=True)
    monkeypatch.setattr(precision_arena, "_logged", set())
    with caplog.at_level(logging.INFO, logger="precision_arena"):
        resolve_precision("auto", "cpu")
        resolve_precision("auto", "cpu")
    records = [r.getMessage() for r in caplog.records if r.name == "precision_arena"]
    assert len(records) == 1 and "auto -> bf16 on cpu" in records[0] and "amx" in records[0]


# ------------------------------------------------------------------------------------------------- forced modes
def test_fp32_runs_the_model_itself_with_sdpa_attention_and_the_same_probabilities(tiny_bert, tiny_batch):
    eager = probabilities(tiny_bert, tiny_batch)
    runner = prepare_model(tiny_bert, "fp32")
    assert runner is tiny_bert
    assert tiny_bert.encoder.config._attn_implementation == "sdpa"
    assert (probabilities(runner, tiny_batch) - eager).abs().max() <= 1e-5


def test_deberta_keeps_its_own_attention(tiny_model):
    tiny_model.eval()
    assert prepare_model(tiny_model, "fp32") is tiny_model
    assert tiny_model.encoder.config._attn_implementation == "eager"  # no SDPA for DeBERTa-v2 in transformers


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_half_precision_casts_a_copy_of_the_encoder_once_and_keeps_the_head_in_fp32(tiny_model, tiny_batch,
                                                                                   precision, dtype):
    model = widen_head(tiny_model)
    before = {name: param.clone() for name, param in model.named_parameters()}
    runner = prepare_model(model, precision)
    assert {p.dtype for p in runner.encoder.parameters()} == {dtype}
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the model itself is untouched
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    heads = {n: p for n, p in model.named_parameters() if not n.startswith("encoder.")}
    for name, param in runner.named_parameters():
        if name in heads:  # the head is shared, not copied, and stays fp32
            assert param is heads[name] and param.dtype == torch.float32
    with torch.inference_mode():
        hidden = runner.encode(tiny_batch["input_ids_a"], tiny_batch["attention_mask_a"])
        output = runner(**{k: v for k, v in tiny_batch.items() if k != "labels"})
    assert hidden.dtype == torch.float32 and output.logits.dtype == torch.float32


def test_int8_quantizes_a_copy_of_the_encoders_linear_layers(tiny_model, tiny_batch):
    model = widen_head(tiny_model)
    runner = prepare_model(model, "int8")
    layer = runner.encoder.encoder.layer[0].attention.self.query_proj
    assert "quantized" in type(layer).__module__
    assert type(model.encoder.encoder.layer[0].attention.self.query_proj) is torch.nn.Linear
    # not exact (a measured lever, never chosen by "auto"); on a tiny random model within a loose bound
    assert (probabilities(runner, tiny_batch) - probabilities(model, tiny_batch)).abs().max() < 0.1


# ------------------------------------------------------------------------------------------- exactness guard
@pytest.mark.parametrize("architecture", ["deberta", "bert"])
def test_bf16_stays_within_2e_3_of_fp32_in_probability(tiny_model, tiny_bert, tiny_batch, architecture):
    model = widen_head(tiny_model) if architecture == "deberta" else tiny_bert
    fp32 = probabilities(prepare_model(model, "fp32"), tiny_batch)
    bf16 = probabilities(prepare_model(model, "bf16"), tiny_batch)
    assert fp32.std(0).max() > 0.01  # the probabilities really vary across battles: the guard can see errors
    assert (bf16 - fp32).abs().max() <= 2e-3


# ------------------------------------------------------------------------------------------------- where used
def test_the_pipeline_resolves_auto_and_runs_forced_bf16(monkeypatch, tiny_model, tiny_tokenizer, tmp_path):
    model = widen_head(tiny_model)
    battles = [{k: b[k] for k in ("prompt", "response_a", "response_b")} for b in BATTLES]
    mock_cpu(monkeypatch)
    monkeypatch.setattr(precision_arena, "onnxruntime_available", lambda: False)
    judge = ArenaPreferencePipeline(model=model, tokenizer=tiny_tokenizer)
    assert judge.precision == "fp32"
    mock_cpu(monkeypatch, amx=True)
    assert ArenaPreferencePipeline(model=model, tokenizer=tiny_tokenizer).precision == "bf16"
    half = ArenaPreferencePipeline(model=model, tokenizer=tiny_tokenizer, precision="bf16")
    keys = ("winner_model_a", "winner_model_b", "winner_tie")
    for full, low in zip(judge(battles, batch_size=2), half(battles, batch_size=2, swap_tta=True)):
        assert max(abs(full[k] - low[k]) for k in keys) < 0.05  # swap_tta averages; the guard is above
    for full, low in zip(judge(battles), half(battles)):
        assert max(abs(full[k] - low[k]) for k in keys) <= 2e-3
    half.save_pretrained(str(tmp_path / "saved"))  # saves the model's own fp32 weights, and the module
    assert (tmp_path / "saved" / "precision_arena.py").is_file()
    reloaded = ArenaModel.from_pretrained(str(tmp_path / "saved"))
    assert {p.dtype for p in reloaded.parameters()} == {torch.float32}
    with pytest.raises(TypeError, match="unknown option"):
        judge(battles[0], precision="bf16")  # chosen when the pipeline is built, not per call


def test_pooled_towers_key_their_cache_by_precision(tiny_model, tiny_tokenizer):
    import datasets

    from arena_preference.battle_transforms import tokenize_arena
    from arena_preference.pooled_towers import embed_towers

    rows = {key: [b[key] if isinstance(b[key], (str, int)) else " ".join(t or "" for t in b[key]) for b in BATTLES]
            for key in ("prompt", "response_a", "response_b", "label")}
    tokenized = tokenize_arena(datasets.Dataset.from_dict(rows), tiny_tokenizer, 64)
    fp32 = embed_towers(tokenized, tiny_model, precision="fp32")
    bf16 = embed_towers(tokenized, tiny_model, precision="bf16")
    assert bf16._fingerprint != fp32._fingerprint
    a32, a16 = torch.tensor(fp32["pooled_a"]), torch.tensor(bf16["pooled_a"])
    assert a16.dtype == torch.float32 and not torch.equal(a16, a32)
    torch.testing.assert_close(a16, a32, atol=0.05, rtol=0.05)


# ------------------------------------------------------------------------------------------ ONNX Runtime, fp32
def padded_batch(model: ArenaModel, lengths=(5, 23, 40), seed: int = 0) -> dict[str, torch.Tensor]:
    """Towers of different lengths, padded: the exported graph must handle any batch, length and mask."""
    generator = torch.Generator().manual_seed(seed)
    vocab = model.config.encoder_config.vocab_size
    batch = {}
    for side, shift in (("a", 0), ("b", 7)):
        ids = torch.zeros(len(lengths), max(lengths) + shift, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, length in enumerate(lengths):
            ids[row, : length + shift] = torch.randint(5, vocab, (length + shift,), generator=generator)
            mask[row, : length + shift] = 1
        batch[f"input_ids_{side}"], batch[f"attention_mask_{side}"] = ids, mask
    for side in ("a", "b"):
        batch[f"style_{side}"] = torch.rand(len(lengths), len(STYLE_FEATURES), generator=generator)
    return batch


@pytest.mark.parametrize("architecture", ["deberta", "bert"])
def test_onnx_fp32_gives_pytorch_fp32s_probabilities(tiny_model, tiny_bert, architecture):
    model = widen_head(tiny_model) if architecture == "deberta" else tiny_bert
    batch = padded_batch(model)
    runner = prepare_model(model, "onnx-fp32")
    assert isinstance(runner.encoder, precision_arena.OnnxRuntimeEncoder)
    assert isinstance(model.encoder, torch.nn.Module) and not isinstance(model.encoder, type(runner.encoder))
    heads = {n: p for n, p in model.named_parameters() if not n.startswith("encoder.")}
    assert {n: p for n, p in runner.named_parameters()} == heads  # the head is shared; no PyTorch encoder copy
    fp32 = probabilities(model, batch)
    assert fp32.std(0).max() > 0.01  # the probabilities vary across battles: a wrong encoder would show
    assert (probabilities(runner, batch) - fp32).abs().max() <= 1e-5
    # lengths and batch sizes the export never saw
    longer = padded_batch(model, lengths=(60, 3), seed=1)
    assert (probabilities(runner, longer) - probabilities(model, longer)).abs().max() <= 1e-5


def test_the_export_is_cached_by_the_encoders_weights(monkeypatch, tiny_bert, tmp_path):
    monkeypatch.setenv("ARENA_ONNX_CACHE", str(tmp_path))
    first = precision_arena.export_encoder(tiny_bert)
    assert first.is_file() and first.parent.parent == tmp_path
    assert [p.name for p in tmp_path.iterdir()] == [first.parent.name]  # the staging folder is gone

    def no_second_export(*args):
        raise AssertionError("exported again")

    monkeypatch.setattr(precision_arena, "_export", no_second_export)
    assert precision_arena.export_encoder(tiny_bert) == first
    with torch.no_grad():
        next(tiny_bert.encoder.parameters()).add_(0.1)  # fine-tuned: a new key, so a new export
    with pytest.raises(AssertionError, match="exported again"):
        precision_arena.export_encoder(tiny_bert)


@pytest.mark.parametrize("failure", ["export", "probe", "not installed"])
def test_auto_falls_back_to_pytorch_fp32_when_onnx_cannot_run_exactly(monkeypatch, caplog, tiny_bert, tmp_path,
                                                                      failure):
    monkeypatch.setenv("ARENA_ONNX_CACHE", str(tmp_path))
    mock_cpu(monkeypatch)
    monkeypatch.setattr(precision_arena, "_logged", set())
    if failure == "export":
        def broken(*args):
            raise RuntimeError("unsupported operator")
        monkeypatch.setattr(precision_arena, "_export", broken)
    elif failure == "probe":  # the exported graph disagrees with PyTorch
        monkeypatch.setattr(precision_arena, "_probe_difference", lambda model, runner: 0.5)
    else:
        monkeypatch.setattr(precision_arena, "onnxruntime_available", lambda: False)
    with caplog.at_level(logging.INFO, logger="precision_arena"):
        runner, precision = precision_arena.prepare_for(tiny_bert, "auto")
    assert precision == "fp32" and runner is tiny_bert
    if failure != "not installed":  # then "auto" never chose onnx-fp32: nothing to warn about
        warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warned) == 1 and "instead of onnx-fp32" in warned[0]
    with pytest.raises(precision_arena.OnnxUnavailable):
        precision_arena.prepare_for(tiny_bert, "onnx-fp32")  # forced: an error, not a silent substitute


def test_the_probe_sees_a_wrong_graph(tiny_bert):
    runner = prepare_model(tiny_bert, "onnx-fp32")
    assert precision_arena._probe_difference(tiny_bert, runner) <= 1e-5
    with torch.no_grad():  # the session still holds the old weights
        tiny_bert.encoder.encoder.layer[0].output.dense.weight.add_(torch.randn(32, 64) * 0.5)
    assert precision_arena._probe_difference(tiny_bert, runner) > precision_arena.ONNX_TOLERANCE


def test_the_pipeline_runs_onnx_fp32_by_default_on_an_avx2_cpu(monkeypatch, tiny_model, tiny_tokenizer):
    model = widen_head(tiny_model)
    battles = [{k: b[k] for k in ("prompt", "response_a", "response_b")} for b in BATTLES]
    mock_cpu(monkeypatch)
    monkeypatch.setattr(precision_arena, "onnxruntime_available", lambda: True)
    judge = ArenaPreferencePipeline(model=model, tokenizer=tiny_tokenizer)
    assert judge.precision == "onnx-fp32"
    plain = ArenaPreferencePipeline(model=model, tokenizer=tiny_tokenizer, precision="fp32")
    keys = ("winner_model_a", "winner_model_b", "winner_tie")
    for fast, exact in zip(judge(battles, batch_size=3, swap_tta=True), plain(battles, batch_size=3, swap_tta=True)):
        assert max(abs(fast[k] - exact[k]) for k in keys) <= 1e-5
