"""The benchmark's reference and fast paths compute the same function (stated tolerances), and its bookkeeping."""

import sys

import pytest
import torch

from conftest import BATTLES, ROOT
from encoding_arena import ArenaCollator, encode_battles

sys.path.append(str(ROOT / "bench"))  # after the repo root: bench/leaderboard.py must not hide leaderboard.py
from seed_reference import seed_batches, seed_logits  # noqa: E402
from throughput import (  # noqa: E402
    encoder_flops,
    length_order,
    one_call_towers,
    quantized_copy,
    sorted_batches,
    token_budget_batches,
)


@pytest.fixture()
def features(tiny_tokenizer):
    return encode_battles(*([b[k] for b in BATTLES] for k in ("prompt", "response_a", "response_b")),
                          tiny_tokenizer, 64)


def test_seed_reference_matches_the_one_call_forward(tiny_model, tiny_tokenizer, tiny_batch, features):
    """Two encoder calls on towers padded to max_length == both towers in one dynamically padded call (1e-5)."""
    tiny_model.eval()
    with torch.no_grad():
        fast = tiny_model(**tiny_batch).logits
        slow = torch.cat([seed_logits(tiny_model, *b[:6]) for b in seed_batches(features, 64, 0)])
    torch.testing.assert_close(slow, fast, atol=1e-5, rtol=0)


def test_one_call_towers_pool_as_a_call_per_side(tiny_model, tiny_batch):
    """The bench's one-call variant computes what the model's call per side computes (padding is masked)."""
    tiny_model.eval()
    towers = [tiny_batch[k][:, : 40 if k.endswith("b") else None] for k in ("input_ids_a", "attention_mask_a",
                                                                              "input_ids_b", "attention_mask_b")]
    with torch.no_grad():
        for got, expected in zip(one_call_towers(tiny_model, *towers), tiny_model.encode_towers(*towers)):
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_sorted_batches_under_inference_mode_match_input_order_under_no_grad(tiny_model, tiny_tokenizer, features):
    tiny_model.eval()
    rows = [{k: features[k][i] for k in features} for i in range(len(BATTLES))]
    collate = ArenaCollator(pad_token_id=0)
    with torch.no_grad():
        plain = tiny_model(**collate(rows)).logits
    order = length_order(features)
    with torch.inference_mode():
        fast = torch.empty_like(plain)
        for idx in sorted_batches(features, order, 3):
            fast[idx] = tiny_model(**collate([rows[i] for i in idx])).logits
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=0)


def test_int8_copy_leaves_the_model_alone_and_stays_near_fp32(tiny_model, tiny_batch):
    """int8 is a measured lever, not a default: the tolerance here (0.05 in probability on a tiny random model) is
    loose; bench/throughput.py reports its real log-loss cost."""
    tiny_model.eval()
    before = {n: p.clone() for n, p in tiny_model.named_parameters()}
    int8 = quantized_copy(tiny_model)
    with torch.inference_mode():
        p32 = tiny_model(**tiny_batch).logits.softmax(-1)
        p8 = int8(**tiny_batch).logits.softmax(-1)
    assert all(torch.equal(p, before[n]) for n, p in tiny_model.named_parameters())
    assert type(tiny_model.encoder.encoder.layer[0].attention.self.query_proj) is torch.nn.Linear
    assert (p8 - p32).abs().max() < 0.05


def test_token_budget_batches_keep_the_references_memory_bound(features):
    order = length_order(features)
    batches = token_budget_batches(features, order, 80)
    assert sorted(i for b in batches for i in b) == list(range(len(BATTLES)))
    for batch in batches:
        longest = max(max(len(features["input_ids_a"][i]), len(features["input_ids_b"][i])) for i in batch)
        assert len(batch) == 1 or len(batch) * longest <= 80


def test_encoder_flops_count_from_shapes():
    class Config:
        hidden_size, intermediate_size, num_hidden_layers = 4, 8, 2

    # per token per layer: 4*16 (projections) + 2*4*8 (feed-forward) + 2*L*4 (attention), L = 3
    assert encoder_flops(5, 3, Config) == 2 * 2 * 5 * 3 * (64 + 64 + 24)


def test_onnxruntime_encoder_matches_the_pytorch_encoder(tiny_tokenizer, tiny_batch, tmp_path):
    """The ONNX Runtime paths on a tiny BERT (the architecture ONNX Runtime fuses, as in the benchmark's MiniLM):
    fp32 with fused kernels matches PyTorch to 1e-4 in probability, at a length the export never saw; int8 stays
    within 0.05 on this random model (bench/throughput.py reports its real log-loss cost). The model is untouched."""
    from onnx_encoder import export_encoder, onnx_runner
    from transformers import BertConfig, BertModel

    from modeling_arena import ArenaModel

    with torch.random.fork_rng():  # seeded here without moving the global RNG of the tests that follow
        torch.manual_seed(0)
        encoder = BertModel(BertConfig(vocab_size=tiny_tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                                       num_attention_heads=4, intermediate_size=64, max_position_embeddings=64),
                            add_pooling_layer=False)
        model = ArenaModel.from_encoder(encoder).eval()
        with torch.no_grad():
            for name, param in model.named_parameters():  # a head that reacts to the towers, not near-uniform
                if not name.startswith("encoder.") and param.dim() >= 2:
                    param.normal_(std=0.5)
    paths = export_encoder(model, tmp_path)
    import onnx

    assert {"Attention", "SkipLayerNormalization"} <= {node.op_type for node in onnx.load(paths["fp32"]).graph.node}
    with torch.inference_mode():
        expected = model(**tiny_batch).logits.softmax(-1)
        fp32 = onnx_runner(model, paths["fp32"], threads=1)(**tiny_batch).logits.softmax(-1)
        int8 = onnx_runner(model, paths["int8"], threads=1)(**tiny_batch).logits.softmax(-1)
        again = model(**tiny_batch).logits.softmax(-1)
    assert tiny_batch["input_ids_a"].shape[1] != 16  # the export's example length
    torch.testing.assert_close(fp32, expected, atol=1e-4, rtol=0)
    assert (int8 - expected).abs().max() < 0.05
    assert isinstance(model.encoder, BertModel)
    torch.testing.assert_close(again, expected, atol=0, rtol=0)


def test_ceiling_bounds_a_lossless_path_by_the_references_flops_and_efficiency():
    from throughput import ceiling

    # reference: 1 pair/s at 100 FLOP/pair on a 200 FLOP/s peak (50%); fast: 2 pairs/s at 50 FLOP/pair
    results = {"ref": {"pairs_per_s": 1.0, "flops_per_s": 100.0}, "fast": {"pairs_per_s": 2.0, "flops_per_s": 100.0}}
    line = ceiling("Inference", "ref", "fast", results, peak=200.0)
    assert "2.00x the FLOPs per pair of fast" in line and "at 50% of the matmul peak" in line
    assert "would reach 4.00x the reference; fast reaches 2.00x" in line


def test_peak_rss_is_the_processs_own_not_its_parents(tmp_path):
    """A child started by subprocess reports its own peak, not the (larger) parent's high-water mark."""
    import subprocess

    from throughput import peak_rss_mb

    ballast = torch.ones(75 * 1024 * 1024)  # 300 MB, written: the parent's RSS is now above 300 MB
    code = f"import sys; sys.path.insert(0, {str(ROOT / 'bench')!r}); from throughput import peak_rss_mb; " \
           "print(peak_rss_mb())"
    child = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert peak_rss_mb() > 300 > 4 * child
    del ballast
