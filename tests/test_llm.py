"""Decoder backbones (embedded:tiny-llama, pooling "last"), LoRA merged before saving, the joint cross-encoder and
distillation: unit checks on tiny models, then train.py end to end (train, save, predict, load back as remote code
without peft or this project), and bench/gpu.sh's CPU dry run."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from arena_preference import train  # noqa: E402
from arena_preference.model_loading import load_model  # noqa: E402
from conftest import BATTLES, run_without_project  # noqa: E402
from encoding_arena import JOINT_MARKERS, ArenaCollator, encode_battles  # noqa: E402
from modeling_arena import last_token  # noqa: E402
from pipeline_arena import ArenaPreferencePipeline  # noqa: E402
from test_train import battle  # noqa: E402

LLAMA = ["--model_name_or_path", "embedded:tiny-llama", "--per_device_eval_batch_size", "4", "--logging_steps", "1",
         "--disable_tqdm", "true", "--precision", "fp32"]
# What LoRA runs use: AdamW at an LLM fine-tuning learning rate (the frozen recipe's adagrad 0.1 is for a head).
LORA = ["--lora_r", "8", "--optim", "adamw_torch", "--learning_rate", "1e-3", "--per_device_train_batch_size", "4",
        "--gradient_checkpointing"]
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")
LONG_ANSWER = " ".join(f"Point {i}: a long and detailed answer about hash tables and sorting." for i in range(60))


def _randomise_head(model, seed: int = 0):
    """A fresh head gives near-uniform probabilities; random head weights make symmetry checks bite."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if not name.startswith("encoder."):
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    return model.eval()


def _llama(**config):
    model, tokenizer = load_model("embedded:tiny-llama", max_length=config.pop("max_length", 128), **config)
    return _randomise_head(model), tokenizer


# ------------------------------------------------------------------------------------------------- the backbone
def test_tiny_llama_is_a_decoder_with_eos_handling_and_a_pad_token():
    model, tokenizer = load_model("embedded:tiny-llama", max_length=64)
    assert model.encoder.config.model_type == "llama" and model.config.pooling == "last"  # the decoder default
    assert tokenizer.pad_token_id is not None  # set: the tokenizer ships without one, as LLM tokenizers do
    enc = encode_battles(["Hi"], ["Hello"], ["Hey"], tokenizer, 64)
    ids = enc["input_ids_a"][0]
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id  # last-token pooling reads </s>
    again, _ = load_model("embedded:tiny-llama", max_length=64)
    assert all(torch.equal(a, b) for a, b in zip(model.encoder.state_dict().values(),
                                                 again.encoder.state_dict().values()))


def test_last_token_is_found_from_the_mask_for_left_and_right_padding():
    hidden = torch.arange(2 * 5, dtype=torch.float32).reshape(2, 5, 1).expand(2, 5, 3)
    right = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1, 1], [0, 1, 1, 1, 1]])
    assert last_token(hidden, right)[:, 0].tolist() == [2.0, 9.0]
    assert last_token(hidden, left)[:, 0].tolist() == [4.0, 9.0]


def test_last_token_pooling_ignores_padding_side_and_batch_composition():
    model, tokenizer = _llama()
    short = encode_battles(["Hi"], ["Hello there"], ["Hey"], tokenizer, 128)["input_ids_a"][0]
    long = encode_battles(["Explain a hash table."], [LONG_ANSWER], ["A map."], tokenizer, 128)["input_ids_a"][0]
    # Not the tokenizer's pad (its EOS): a trailing EOS pad at the last real token's position would compute the
    # same state as that token and hide a pooling that reads the last column instead of the last real token.
    pad = tokenizer.unk_token_id
    assert pad != tokenizer.eos_token_id
    width = len(long)
    gap = width - len(short)
    ids = torch.tensor([short + [pad] * gap, [pad] * gap + short, long])
    mask = torch.tensor([[1] * len(short) + [0] * gap, [0] * gap + [1] * len(short), [1] * width])
    with torch.no_grad():
        alone = model.encode(torch.tensor([short]), torch.ones(1, len(short), dtype=torch.long))
        batched = model.encode(ids, mask)
    assert torch.isfinite(batched).all()
    assert torch.allclose(batched[0], alone[0], atol=1e-5), "right padding beside a longer sequence"
    assert torch.allclose(batched[1], alone[0], atol=1e-5), "left padding"


def test_left_padding_reads_like_right_padding_with_absolute_positions():
    """Rotary positions (Llama) are blind to a shift; learned absolute ones (GPT-2) are not: the positions counted
    from the mask make a left-padded row read as it does alone."""
    from transformers import GPT2Config, GPT2Model

    from modeling_arena import ArenaModel

    torch.manual_seed(0)
    encoder = GPT2Model(GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=4, n_positions=32))
    model = ArenaModel.from_encoder(encoder, pooling="last", style_features=False, max_length=32).eval()
    ids = torch.randint(1, 64, (1, 6))
    padded = torch.cat([torch.zeros(1, 4, dtype=torch.long), ids], 1)
    with torch.no_grad():
        alone = model.encode(ids, torch.ones_like(ids))
        left = model.encode(padded, torch.cat([torch.zeros(1, 4, dtype=torch.long), torch.ones_like(ids)], 1))
        shifted = model.encoder(input_ids=padded, attention_mask=(padded > 0).long()).last_hidden_state[:, -1]
    assert torch.allclose(left, alone, atol=1e-5)
    assert not torch.allclose(shifted, alone, atol=1e-3)  # the check bites: default positions read differently


@pytest.mark.parametrize("cross_encoder", [False, True], ids=["dual", "joint"])
def test_a_battle_scores_the_same_alone_and_beside_a_much_longer_one(cross_encoder):
    model, tokenizer = _llama(cross_encoder=cross_encoder)
    judge = ArenaPreferencePipeline(model=model, tokenizer=tokenizer, precision="fp32")
    short = {"prompt": "What is 2+2?", "response_a": "4", "response_b": "The answer is 5."}
    long = {"prompt": "Explain a hash table.", "response_a": LONG_ANSWER, "response_b": "A map."}
    alone = judge([short], batch_size=1)[0]
    beside = judge([short, long], batch_size=2)[0]
    for label in ("winner_model_a", "winner_model_b", "winner_tie"):
        assert alone[label] == pytest.approx(beside[label], abs=1e-4)
    assert max(alone[k] for k in ("winner_model_a", "winner_model_b", "winner_tie")) > 0.4  # not a flat output


@pytest.mark.parametrize("cross_encoder", [False, True], ids=["dual", "joint"])
def test_swapping_a_and_b_swaps_the_probabilities(cross_encoder):
    model, tokenizer = _llama(cross_encoder=cross_encoder)
    judge = ArenaPreferencePipeline(model=model, tokenizer=tokenizer, precision="fp32")
    battles = [{k: b[k] for k in ("prompt", "response_a", "response_b")} for b in BATTLES]
    battles.append({"prompt": "Explain a hash table.", "response_a": LONG_ANSWER, "response_b": "A **map**."})
    swapped = [{**b, "response_a": b["response_b"], "response_b": b["response_a"]} for b in battles]
    spread = 0.0
    for one, other in zip(judge(battles, batch_size=3), judge(swapped, batch_size=2)):
        assert one["winner_model_a"] == pytest.approx(other["winner_model_b"], abs=1e-5)
        assert one["winner_model_b"] == pytest.approx(other["winner_model_a"], abs=1e-5)
        assert one["winner_tie"] == pytest.approx(other["winner_tie"], abs=1e-5)
        spread = max(spread, abs(one["winner_model_a"] - one["winner_model_b"]))
    assert spread > 0.01  # the check is not passed by a model that says A = B everywhere


# ------------------------------------------------------------------------------------------- the cross-encoder
def test_joint_sequence_keeps_all_three_parts_and_the_latest_turns():
    _, tokenizer = load_model("embedded:tiny-llama", max_length=64)
    markers = tokenizer(list(JOINT_MARKERS), add_special_tokens=False)["input_ids"]
    prompt = ["First question about cats?", "Second question " + "about dogs " * 40 + "END?"]
    a = ["Cats purr.", "Dogs " * 80]
    b = ["Cats sleep.", "Puppies " * 80]
    enc = encode_battles([prompt], [a], [b], tokenizer, 64, cross_encoder=True)
    for ids in (enc["input_ids_a"][0], enc["input_ids_b"][0]):
        assert len(ids) == 64 and ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
        text = tokenizer.decode(ids[1:-1])
        for marker in JOINT_MARKERS:
            assert marker in text
        assert "END?" in text  # the last prompt's tail
        assert "cats" not in text.lower()  # the first exchange does not fit
        answers = text.split("Response A:")[1].split("Response B:")
        assert answers[0].strip() and answers[1].strip()  # both answers kept
    first = tokenizer.decode(enc["input_ids_a"][0])
    assert first.index("Dogs") < first.index("Puppies")  # order (a, b) ...
    second = tokenizer.decode(enc["input_ids_b"][0])
    assert second.index("Puppies") < second.index("Dogs")  # ... and order (b, a)
    # short battles: every turn, whole, nothing cut
    short = encode_battles([["Hi", "Bye"]], [["Hello", "Ciao"]], [["Hey", "See you"]], tokenizer, 128,
                           cross_encoder=True)["input_ids_a"][0]
    assert tokenizer.decode(short[1:-1]) == ("User: Hi Response A: Hello Response B: Hey User: Bye Response A: Ciao "
                                             "Response B: See you")
    assert len(short) < 128 and short.count(markers[0][-1]) >= 2


def test_cross_encoder_needs_the_classify_head():
    from huggingface_hub.errors import StrictDataclassError

    with pytest.raises((ValueError, StrictDataclassError), match="cross_encoder needs head='classify'"):
        load_model("embedded:tiny-llama", head="rank", cross_encoder=True)


# ------------------------------------------------------------------------------------------------------- LoRA
def test_lora_trains_only_adapters_and_head_and_merges_to_the_same_outputs(tiny_batch):
    pytest.importorskip("peft")
    from arena_preference.lora import apply_lora, merge_lora

    model, tokenizer = load_model("embedded:tiny-llama", max_length=64)
    enc = encode_battles([b["prompt"] for b in BATTLES], [b["response_a"] for b in BATTLES],
                         [b["response_b"] for b in BATTLES], tokenizer, 64)
    batch = ArenaCollator(tokenizer.pad_token_id)([{k: enc[k][i] for k in enc} | {"labels": b["label"]}
                                                   for i, b in enumerate(BATTLES)])
    apply_lora(model, r=4)
    trainable = {name for name, param in model.named_parameters() if param.requires_grad}
    assert trainable and all("lora_" in name or not name.startswith("encoder.") for name in trainable)
    assert any(not name.startswith("encoder.") for name in trainable)  # the head trains fully
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        optimizer.zero_grad()
        model(**batch).loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        adapted = model(**batch).logits
    assert merge_lora(model) and not merge_lora(model)
    assert not any("lora_" in key or "base_layer" in key for key in model.state_dict())
    assert model.config.lora["merged"] and model.config.lora["r"] == 4
    with torch.no_grad():
        merged = model(**batch).logits
    assert torch.allclose(adapted, merged, atol=1e-5)


def test_lora_target_module_defaults():
    from transformers import BertConfig, LlamaConfig

    from arena_preference.lora import target_modules

    assert "q_proj" in target_modules(LlamaConfig()) and "down_proj" in target_modules(LlamaConfig())
    assert target_modules(BertConfig()) == ["query", "key", "value", "dense"]
    assert target_modules(LlamaConfig(), "q_proj, v_proj") == ["q_proj", "v_proj"]
    assert target_modules(LlamaConfig(), "all-linear") == "all-linear"


# ------------------------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("llm-battles")
    rows = [battle(i) for i in range(32)]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:24]))
    (folder / "validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[24:]))
    unlabelled = [{k: v for k, v in r.items() if k != "winner"} for r in rows[:24]]
    (folder / "unlabelled.jsonl").write_text("".join(json.dumps(r) + "\n" for r in unlabelled))
    with open(folder / "test.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "prompt", "response_a", "response_b"])
        for r in rows[:5]:
            writer.writerow([1000 + r["id"], json.dumps([r["prompt"]]), json.dumps([r["response_a"]]),
                             json.dumps([r["response_b"]])])
    # A teacher that favours the longer (markdown) answer: learnable from the battles, unlike the votes, which
    # follow the row number.
    with open(folder / "teacher.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "winner_model_a", "winner_model_b", "winner_tie"])
        for r in rows:
            writer.writerow([r["id"], *teacher_probs(r)])
    return {name: folder / f"{name}.{'csv' if name in ('test', 'teacher') else 'jsonl'}"
            for name in ("train", "validation", "unlabelled", "test", "teacher")}


def teacher_probs(row: dict) -> list[float]:
    a_long, b_long = row["response_a"].startswith("##"), row["response_b"].startswith("##")
    if a_long != b_long:
        return [0.8, 0.1, 0.1] if a_long else [0.1, 0.8, 0.1]
    return [0.2, 0.2, 0.6]


def files_args(data) -> list[str]:
    return ["--train_file", str(data["train"]), "--validation_file", str(data["validation"]),
            "--test_file", str(data["test"])]


RUNS = {
    "lora": [*LORA, "--pooling", "last", "--max_length", "64", "--bf16"],  # bf16: the frozen base held in bf16
    "joint": [*LORA, "--cross_encoder", "true", "--max_length", "96"],
    "teacher": ["--teacher_file", "TEACHER", "--distill_weight", "1", "--max_length", "64"],
}


@pytest.fixture(scope="module", params=list(RUNS))
def run(request, data, tmp_path_factory):
    pytest.importorskip("peft")
    out = tmp_path_factory.mktemp(f"llm-{request.param}")
    extra = [str(data["teacher"]) if arg == "TEACHER" else arg for arg in RUNS[request.param]]
    result = train.main([*LLAMA, *files_args(data), "--output_dir", str(out), "--max_steps", "4", "--eval_steps", "2",
                         "--save_steps", "2", *extra])
    return request.param, result


def test_trains_saves_merged_weights_predicts_and_loads_as_remote_code_without_peft(run, tmp_path):
    name, result = run
    out = result["output_dir"]
    config = json.loads((out / "config.json").read_text())
    assert config["pooling"] == "last" and config["encoder_config"]["model_type"] == "llama"
    assert config["cross_encoder"] is (name == "joint")
    assert not [f for f in ADAPTER_FILES if (out / f).exists()], "adapter files saved"
    from safetensors import safe_open

    with safe_open(str(out / "model.safetensors"), framework="pt") as weights:
        keys = list(weights.keys())
    assert keys and not [k for k in keys if "lora_" in k or "base_layer" in k]
    card = (out / "README.md").read_text()
    if name == "teacher":
        assert config["lora"] is None and "teacher" in card
    else:
        assert config["lora"]["merged"] and config["lora"]["r"] == 8
        assert "LoRA" in card and "merged" in card

    # The repo loads as remote code where neither peft nor this project can be imported, and predicts what
    # train.py's --do_predict wrote.
    with open(out / "predictions.csv") as handle:
        expected = list(csv.DictReader(handle))
    battles = [battle(int(row["id"]) - 1000) for row in expected]
    (tmp_path / "battles.json").write_text(json.dumps([{k: b[k] for k in ("prompt", "response_a", "response_b")}
                                                       for b in battles]))
    code = f"""
import json, sys
sys.modules["peft"] = None  # peft must not be needed to load the saved repo
from transformers import AutoModel, pipeline
model = AutoModel.from_pretrained({str(out)!r}, trust_remote_code=True)
assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
judge = pipeline("arena-preference", model={str(out)!r}, trust_remote_code=True, precision="fp32")
battles = json.load(open({str(tmp_path / 'battles.json')!r}))
swapped = [dict(b, response_a=b["response_b"], response_b=b["response_a"]) for b in battles]
long = dict(prompt="Explain a hash table.", response_a={LONG_ANSWER!r}, response_b="A map.")
print(json.dumps([judge(battles, batch_size=2), judge(swapped, batch_size=3), judge([battles[1]], batch_size=1),
                  judge([battles[1], long], batch_size=2)]))
"""
    done = run_without_project(code, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    got, swapped, alone, beside = json.loads(done.stdout.strip().splitlines()[-1])
    labels = ("winner_model_a", "winner_model_b", "winner_tie")
    for row, result_row in zip(expected, got):
        for label in labels:
            assert result_row[label] == pytest.approx(float(row[label]), abs=2e-6)
    # the done-when checks on the trained, reloaded model: A/B swap (1e-5), alone vs beside a longer battle (1e-4)
    for one, other in zip(got, swapped):
        assert [one[k] for k in labels] == pytest.approx([other[k] for k in (labels[1], labels[0], labels[2])],
                                                         abs=1e-5)
    assert [alone[0][k] for k in labels] == pytest.approx([beside[0][k] for k in labels], abs=1e-4)


def test_lora_changed_only_the_adapted_weights_and_the_head(run):
    """LoRA runs: the adapted matrices (merged) and the head changed, nothing else. The teacher run keeps the
    default frozen recipe: only the head changed."""
    name, result = run
    from transformers import set_seed

    set_seed(42)  # train.py seeds before building the model: the same fresh weights
    # the teacher run is the default frozen recipe on a dual tower, whose classify head has the relevance terms
    initial, _ = load_model("embedded:tiny-llama", cross_encoder=name == "joint", relevance=name == "teacher")
    before = initial.state_dict()
    if name == "lora":  # --bf16: the frozen base was held in bf16, so its unadapted weights are bf16-rounded
        before = {k: v.to(torch.bfloat16).float() if k.startswith("encoder.") else v for k, v in before.items()}
    after = {k: v.cpu() for k, v in result["trainer"].model.state_dict().items()}
    assert set(before) == set(after)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    adapted = {k for k in before if k.startswith("encoder.") and k.endswith("_proj.weight")}
    if name == "teacher":
        adapted = set()
        assert not any(k.startswith("encoder.") for k in changed)
    else:
        assert adapted
    assert adapted <= changed  # every adapted matrix got its merged update
    assert all(not k.startswith("encoder.") or k in adapted for k in changed)  # embeddings and norms as loaded
    assert any(not k.startswith("encoder.") for k in changed)  # the head trained


def _mean_kl_to_teacher(model, tokenizer, rows) -> float:
    judge = ArenaPreferencePipeline(model=model, tokenizer=tokenizer, precision="fp32")
    scored = judge([{k: r[k] for k in ("prompt", "response_a", "response_b")} for r in rows], batch_size=8)
    labels = ("winner_model_a", "winner_model_b", "winner_tie")
    return sum(sum(t * math.log(t / s[label]) for t, label in zip(teacher_probs(r), labels))
               for r, s in zip(rows, scored)) / len(rows)


def test_distillation_lowers_the_kl_to_the_teacher(data, tmp_path):
    rows = [battle(i) for i in range(24)]
    kl = {}
    for name, extra in (("votes", []), ("teacher", ["--teacher_file", str(data["teacher"]), "--distill_weight", "1"])):
        result = train.main([*LLAMA, "--train_file", str(data["train"]), "--validation_split_percentage", "0",
                             "--do_train", "true", "--output_dir", str(tmp_path / name), "--max_length", "64",
                             "--num_train_epochs", "20", "--per_device_train_batch_size", "8", *extra])
        kl[name] = _mean_kl_to_teacher(result["trainer"].model, result["trainer"].processing_class, rows)
    from transformers import set_seed

    set_seed(42)
    fresh, tokenizer = load_model("embedded:tiny-llama", max_length=64)
    kl["untrained"] = _mean_kl_to_teacher(fresh, tokenizer, rows)
    assert kl["teacher"] < 0.5 * kl["untrained"], kl
    assert kl["teacher"] < kl["votes"], kl


def test_unlabelled_battles_train_on_the_teacher_alone(data, tmp_path):
    result = train.main([*LLAMA, "--train_file", str(data["unlabelled"]), "--teacher_file", str(data["teacher"]),
                         "--validation_split_percentage", "0", "--do_train", "true", "--output_dir",
                         str(tmp_path / "out"), "--max_length", "64", "--max_steps", "2"])
    labels = result["trainer"].train_dataset["labels"]
    assert [pytest.approx(x) for x in labels[0]] == teacher_probs(battle(0))
    assert (result["output_dir"] / "model.safetensors").is_file()


def test_soft_targets_mix_votes_and_teacher_and_swap_with_the_battle(data):
    from datasets import Dataset

    from arena_preference.battle_transforms import swap_battles
    from arena_preference.distillation import add_teacher_targets

    train_rows = Dataset.from_list([{"id": 0, "label": 0}, {"id": 1, "label": 2}, {"id": 99, "label": 1}])
    mixed = add_teacher_targets(train_rows, data["teacher"], 0.25)
    expected = [0.75 * (k == 0) + 0.25 * p for k, p in enumerate(teacher_probs(battle(0)))]
    assert mixed["labels"][0] == pytest.approx(expected)
    assert mixed["labels"][2] == [0.0, 1.0, 0.0]  # not in the teacher file: the vote alone
    swapped = swap_battles(mixed)
    assert swapped["labels"][0] == pytest.approx([expected[1], expected[0], expected[2]])


# ------------------------------------------------------------------------------------------------ user errors
@pytest.mark.parametrize("args, message", [
    (["--lora_r", "8", "--freeze_encoder", "true"], "--freeze_encoder true keeps the encoder"),
    (["--lora_r", "0"], "--lora_r 0: expected a positive int"),
    (["--cross_encoder", "true", "--head", "rank"], "cross_encoder needs head='classify'"),
    (["--teacher_file", "nowhere.csv"], "--teacher_file nowhere.csv: no such file"),
    (["--teacher_file", "TEACHER", "--distill_weight", "1.5"], "--distill_weight 1.5: expected"),
])
def test_bad_llm_options_end_in_one_line(args, message, data, tmp_path, capsys):
    args = [str(data["teacher"]) if a == "TEACHER" else a for a in args]
    with pytest.raises(SystemExit) as exit_info:
        train.main([*LLAMA, *files_args(data), "--output_dir", str(tmp_path / "out"), "--max_steps", "1", *args])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_lora_without_peft_names_the_extra(data, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(SystemExit):
        train.main([*LLAMA, *files_args(data), "--output_dir", str(tmp_path / "out"), "--max_steps", "1", *LORA])
    err = capsys.readouterr().err
    assert "pip install 'arena-preference[llm]'" in err and len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------------------------- recipes, bench
def test_llm_lora_example_parses_to_its_recipe():
    from arena_preference.training_arguments import parse_args

    model_args, _, training_args = parse_args([str(ROOT / "examples" / "llm_lora.yaml")])
    assert model_args.lora_r and model_args.pooling == "last" and not model_args.freeze_encoder
    assert training_args.bf16 and training_args.gradient_checkpointing and training_args.optim == "adamw_torch"
    import yaml

    accelerate = yaml.safe_load((ROOT / "examples" / "accelerate_multi_gpu.yaml").read_text())
    assert accelerate["distributed_type"] == "MULTI_GPU" and accelerate["mixed_precision"] == "bf16"


def test_bench_gpu_dry_run_passes_on_cpu(tmp_path):
    pytest.importorskip("peft")
    done = subprocess.run(["bash", str(ROOT / "bench" / "gpu.sh"), "--dry_run", "--output", str(tmp_path / "r.json")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "r.json").read_text())
    assert {r["architecture"] for r in results["runs"]} == {"dual tower", "cross-encoder"}
    for r in results["runs"]:
        assert r["train_battles_per_s"] > 0 and r["predict_battles_per_s"] > 0 and r["lora_trainable"] > 0
    assert "dual tower" in done.stdout and "cross-encoder" in done.stdout


def test_lora_trains_under_torchrun_with_two_processes(data, tmp_path):
    """DDP with frozen base weights and adapters: non-reentrant checkpointing as examples/llm_lora.yaml has it."""
    pytest.importorskip("peft")
    import os

    from test_train import free_port

    out = tmp_path / "out"
    command = [str(Path(sys.executable).parent / "torchrun"), "--nproc_per_node", "2", "--master_port",
               str(free_port()), str(ROOT / "train.py"), *LLAMA, *LORA, "--train_file", str(data["train"]),
               "--validation_file", str(data["validation"]), "--output_dir", str(out), "--max_length", "64",
               "--max_steps", "2", "--save_strategy", "no", "--gradient_checkpointing_kwargs",
               '{"use_reentrant": false}', "--ddp_find_unused_parameters", "false"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    config = json.loads((out / "config.json").read_text())
    assert config["lora"]["merged"] and not [f for f in ADAPTER_FILES if (out / f).exists()]
    results = json.loads((out / "all_results.json").read_text())
    model, tokenizer = load_model(str(out))
    judge = ArenaPreferencePipeline(model=model, tokenizer=tokenizer, precision="fp32")
    rows = [json.loads(line) for line in data["validation"].read_text().splitlines()]
    scored = judge([{k: r[k] for k in ("prompt", "response_a", "response_b")} for r in rows], batch_size=4)
    labels = ("winner_model_a", "winner_model_b", "winner_tie")
    expected = -sum(math.log(s[labels[("model_a", "model_b", "tie").index(r["winner"])]])
                    for s, r in zip(scored, rows)) / len(rows)
    # evaluation ran on the merged model after training, gathered over both ranks without duplicates
    assert results["eval_log_loss"] == pytest.approx(expected, abs=1e-4)


def test_resuming_a_lora_run_ends_with_the_uninterrupted_runs_weights(data, tmp_path):
    """Checkpoints hold the adapters unmerged (peft's keys), which is what resuming loads; the merge comes after."""
    pytest.importorskip("peft")
    from safetensors.torch import load_file

    args = [*LLAMA, *LORA, "--train_file", str(data["train"]), "--validation_split_percentage", "0", "--do_train",
            "true", "--max_length", "64", "--max_steps", "4", "--save_steps", "2"]
    whole = train.main([*args, "--output_dir", str(tmp_path / "whole")])["output_dir"]
    checkpoint = tmp_path / "checkpoint-2"
    (whole / "checkpoint-2").rename(checkpoint)
    assert any("lora_" in key for key in load_file(str(checkpoint / "model.safetensors")))
    resumed = train.main([*args, "--output_dir", str(tmp_path / "resumed"), "--resume_from_checkpoint",
                          str(checkpoint)])["output_dir"]
    expected, got = load_file(str(whole / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert set(expected) == set(got)
    assert all(torch.equal(expected[key], got[key]) for key in expected)
