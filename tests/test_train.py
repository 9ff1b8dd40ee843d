"""train.py end to end on embedded:tiny-deberta (max_length 64, a few steps): both heads, the output repo, the
predictions file, resume, two-process runs (torchrun, accelerate launch), push_to_hub against a local Hub server,
user errors, config files and the seed defaults."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from arena_preference import train  # noqa: E402  (the script's entry point, called as transformers' example tests call theirs)
from arena_preference.run_folder import UserError  # noqa: E402
from arena_preference.hub_io import save_repo
from arena_preference.scoring import METRIC_PATH  # noqa: E402
from arena_preference.training_arguments import ArenaTrainingArguments, parse_args  # noqa: E402
from hub_server import HubServer  # noqa: E402

TOPICS = ["math", "a poem", "python code", "the capital of France", "hash tables", "sorting", "the weather",
          "history", "music", "travel", "cats", "dogs"]
TINY = ["--model_name_or_path", "embedded:tiny-deberta", "--max_length", "64", "--per_device_eval_batch_size", "4",
        "--logging_steps", "1", "--disable_tqdm", "true"]
REPO_FILES = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "configuration_arena.py",
              "modeling_arena.py", "encoding_arena.py", "pipeline_arena.py", "README.md"}


def battle(i: int) -> dict:
    topic = TOPICS[i % len(TOPICS)]
    long = f"## About {topic}\n- a **detailed** point\n- another point about {topic}"
    return {"id": i, "model_a": "m1", "model_b": "m2", "prompt": f"Tell me about {topic}, please ({i // 12})",
            "response_a": long if i % 3 == 0 else f"{topic}.", "response_b": f"Some words on {topic}." if i % 2 else
            long, "winner": ("model_a", "model_b", "tie")[i % 3]}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("battles")
    rows = [battle(i) for i in range(32)]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:24]))
    (folder / "validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[24:]))
    with open(folder / "test.csv", "w", newline="") as handle:  # Kaggle layout, no labels
        writer = csv.writer(handle)
        writer.writerow(["id", "prompt", "response_a", "response_b"])
        for r in rows[:5]:
            writer.writerow([1000 + r["id"], json.dumps([r["prompt"]]), json.dumps([r["response_a"]]),
                             json.dumps([r["response_b"]])])
    return {"train": folder / "train.jsonl", "validation": folder / "validation.jsonl", "test": folder / "test.csv"}


def files_args(data) -> list[str]:
    return ["--train_file", str(data["train"]), "--validation_file", str(data["validation"]),
            "--test_file", str(data["test"])]


def initial_model(head: str):
    from transformers import set_seed

    from arena_preference.model_loading import load_model

    from arena_preference.recipe import relevance_options
    from arena_preference.training_arguments import ModelArguments

    set_seed(42)  # train.py seeds before building the model: the same fresh heads
    options = relevance_options(ModelArguments(model_name_or_path="embedded:tiny-deberta", head=head))
    model, _ = load_model("embedded:tiny-deberta", head=head, **options)
    return model


@pytest.fixture(scope="module", params=["classify", "rank"])
def trained(request, data, tmp_path_factory):
    """A few steps per head. classify: the default recipe (the head on pooled towers of the frozen encoder). rank:
    fine-tuning the whole encoder, with bf16, gradient checkpointing, accumulation, warmup and A/B swap
    augmentation."""
    out = tmp_path_factory.mktemp(f"out-{request.param}")
    extra = (["--freeze_encoder", "false", "--optim", "adamw_torch", "--learning_rate", "5e-5", "--bf16", "--gradient_checkpointing", "--gradient_accumulation_steps", "2",
              "--warmup_steps", "1", "--swap_augment"] if request.param == "rank" else [])
    result = train.main([*TINY, *files_args(data), "--head", request.param, "--output_dir", str(out),
                         "--max_steps", "4", "--eval_steps", "2", "--save_steps", "2", *extra])
    return request.param, result


def test_training_changes_every_trainable_parameter_and_writes_a_hub_repo(trained):
    head, result = trained
    out = result["output_dir"]
    before = dict(initial_model(head).named_parameters())
    after = dict(result["trainer"].model.named_parameters())
    unchanged = [n for n, p in after.items() if p.requires_grad and torch.equal(p.detach().cpu(), before[n].detach())]
    assert not unchanged, f"parameters not trained: {unchanged}"
    encoder = {n: p for n, p in after.items() if n.startswith("encoder.")}
    if head == "classify":  # the default: the encoder is frozen, the head trains on its pooled towers
        assert {"pooled_a", "pooled_b"} <= set(result["trainer"].train_dataset.column_names)
        assert not any(p.requires_grad for p in encoder.values())
        assert all(torch.equal(p.detach().cpu(), before[n].detach()) for n, p in encoder.items())
    else:
        assert all(p.requires_grad for p in encoder.values())
    assert result["trainer"].state.global_step == 4

    assert REPO_FILES <= {p.name for p in out.iterdir()}
    config = json.loads((out / "config.json").read_text())
    assert config["head"] == head and config["max_length"] == 64
    assert config["custom_pipelines"]["arena-preference"]["impl"] == "pipeline_arena.ArenaPreferencePipeline"
    assert config["auto_map"]["AutoModel"] == "modeling_arena.ArenaModel"
    assert not list(out.parent.glob(f".{out.name}.saving-*")), "staging folder left behind"

    # The model card: Hub YAML metadata carrying the evaluation results that eval_results.json holds.
    card = (out / "README.md").read_text()
    metadata = yaml.safe_load(card.split("---")[1])
    assert metadata["library_name"] == "transformers" and metadata["pipeline_tag"] == "text-classification"
    assert "arena-preference" in metadata["tags"] and head in metadata["tags"]
    eval_results = json.loads((out / "eval_results.json").read_text())
    metrics = {m["type"]: m["value"] for m in metadata["model-index"][0]["results"][0]["metrics"]}
    assert metrics["log_loss"] == pytest.approx(eval_results["eval_log_loss"], abs=1e-4)
    assert set(metrics) >= {"log_loss", "accuracy", "f1_macro", "precision_macro", "recall_macro"}
    assert 'pipeline("arena-preference"' in card and "## Limits" in card
    for name in ("training_curve.png", "confusion_matrix.png", "calibration.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name

    # The saved repo reloads (no project code needed is checked in the push test) and predicts as trained.
    from arena_preference.model_loading import load_model

    reloaded, _ = load_model(str(out))
    for name, param in reloaded.state_dict().items():
        assert torch.equal(param, result["trainer"].model.state_dict()[name].cpu()), name


def test_eval_metrics_are_the_metric_module_on_the_eval_predictions(trained, data):
    _, result = trained
    metrics = result["metrics"]
    for key in ("eval_log_loss", "eval_accuracy", "eval_precision_macro", "eval_recall_macro", "eval_f1_macro",
                "eval_f1_winner_model_a", "eval_f1_winner_model_b", "eval_f1_winner_tie"):
        assert key in metrics, key
    # Recompute log loss from the saved model's probabilities on the validation battles.
    probs = pipeline_probabilities(result["output_dir"], data["validation"])
    labels = [("model_a", "model_b", "tie").index(json.loads(line)["winner"])
              for line in data["validation"].read_text().splitlines()]
    expected = -sum(math.log(p[y]) for p, y in zip(probs, labels)) / len(labels)
    assert metrics["eval_log_loss"] == pytest.approx(expected, abs=2e-3)  # bf16 run: small rounding


def test_dataset_name_folder_evaluates_its_validation_split(trained, data, tmp_path):
    """--dataset_name with a dataset folder (what export_arena writes and a Hub dataset repo is): its splits are
    used; evaluating the trained model there gives the metrics of the training run's own evaluation."""
    import datasets

    from arena_dataset import export_arena
    from arena_dataset import load_arena

    _, result = trained
    folder = export_arena(datasets.DatasetDict({"train": load_arena(str(data["train"])),
                                                "validation": load_arena(str(data["validation"]))}),
                          tmp_path / "dataset")
    evaluated = train.main(["--model_name_or_path", str(result["output_dir"]), "--dataset_name", str(folder),
                            "--do_eval", "--output_dir", str(tmp_path / "eval"), "--per_device_eval_batch_size", "4",
                            "--disable_tqdm", "true"])
    assert evaluated["metrics"]["eval_samples"] == 8
    assert evaluated["metrics"]["eval_log_loss"] == pytest.approx(result["metrics"]["eval_log_loss"], abs=2e-3)
    assert not (tmp_path / "eval" / "model.safetensors").exists()  # evaluation alone saves no model


def pipeline_probabilities(model_dir: Path, battles_file: Path) -> list[list[float]]:
    from arena_dataset import load_arena
    from arena_preference.model_loading import load_model
    from pipeline_arena import ArenaPreferencePipeline

    model, tokenizer = load_model(str(model_dir))
    judge = ArenaPreferencePipeline(model=model, tokenizer=tokenizer)
    rows = load_arena(str(battles_file), split="validation")
    out = judge([{k: r[k] for k in ("prompt", "response_a", "response_b")} for r in rows], batch_size=4)
    return [[o["winner_model_a"], o["winner_model_b"], o["winner_tie"]] for o in out]


def read_predictions(path: Path) -> list[list[str]]:
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_predictions_csv_is_in_kaggle_format(trained, data, tmp_path):
    head, result = trained
    rows = read_predictions(result["predictions"])
    assert rows[0] == ["id", "winner_model_a", "winner_model_b", "winner_tie"]
    with open(data["test"], newline="") as handle:
        test_ids = [r["id"] for r in csv.DictReader(handle)]
    assert [r[0] for r in rows[1:]] == test_ids  # one row per input row, in input order
    for row in rows[1:]:
        probs = [float(v) for v in row[1:]]
        assert all(0 <= p <= 1 for p in probs) and sum(probs) == pytest.approx(1, abs=1e-5)

    # Predict-only from the saved repo, with A/B swap averaging: the same format and, both heads being symmetric in
    # A and B by construction, the same numbers.
    train.main(["--model_name_or_path", str(result["output_dir"]), "--do_predict", "--test_file",
                str(data["test"]), "--output_dir", str(tmp_path), "--swap_tta", "--disable_tqdm", "true"])
    tta = read_predictions(tmp_path / "predictions.csv")
    assert [r[0] for r in tta] == [r[0] for r in rows]
    assert all(sum(float(v) for v in r[1:]) == pytest.approx(1, abs=1e-5) for r in tta[1:])
    assert not list(tmp_path.glob("*.safetensors")), "predict-only must not save a model"
    for a, b in zip(tta[1:], rows[1:]):
        assert [float(x) for x in a[1:]] == pytest.approx([float(x) for x in b[1:]], abs=2e-3)


def test_predicting_with_an_untrained_encoder_warns(trained, data, tmp_path, capsys):
    _, result = trained
    predict = ["--do_predict", "--test_file", str(data["test"]), "--disable_tqdm", "true"]
    train.main([*TINY, *predict, "--output_dir", str(tmp_path / "fresh")])  # logs to stderr (basicConfig)
    assert "untrained model" in capsys.readouterr().err
    train.main(["--model_name_or_path", str(result["output_dir"]), *predict, "--output_dir", str(tmp_path / "t")])
    assert "untrained model" not in capsys.readouterr().err


def test_resume_latest_continues_at_the_right_step(data, tmp_path, capsys):
    args = [*TINY, "--train_file", str(data["train"]), "--do_train", "--max_steps", "4", "--save_steps", "2",
            "--eval_strategy", "no", "--save_total_limit", "3"]
    full = train.main([*args, "--output_dir", str(tmp_path / "full")])
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    shutil.copytree(tmp_path / "full" / "checkpoint-2", resumed_dir / "checkpoint-2")  # as if killed after step 3
    capsys.readouterr()
    resumed = train.main([*args, "--output_dir", str(resumed_dir), "--resume_from_checkpoint", "latest"])

    logged_now = capsys.readouterr().out.count("{'loss':")  # Trainer prints one line per logged step
    assert logged_now == 2 and resumed["trainer"].state.global_step == 4  # steps 3 and 4 only
    full_losses = [e["loss"] for e in full["trainer"].state.log_history if "loss" in e]
    resumed_losses = [e["loss"] for e in resumed["trainer"].state.log_history if "loss" in e]
    assert resumed_losses == pytest.approx(full_losses, abs=1e-5)  # steps 1-2 from the checkpoint, 3-4 anew
    full_state, resumed_state = full["trainer"].model.state_dict(), resumed["trainer"].model.state_dict()
    for name in full_state:
        torch.testing.assert_close(resumed_state[name], full_state[name], msg=name)

    with pytest.raises(SystemExit):  # no checkpoint to resume from: a user error, not a fresh start
        train.main([*args, "--output_dir", str(tmp_path / "empty"), "--resume_from_checkpoint", "latest"])


PROBE = """
import hashlib, json, os, sys
sys.path.insert(0, {root!r})
from arena_preference import train
result = train.main(sys.argv[1:])
state = result["trainer"].model.state_dict()
digest = hashlib.sha256(b"".join(state[k].detach().cpu().numpy().tobytes() for k in sorted(state))).hexdigest()
losses = [e["loss"] for e in result["trainer"].state.log_history if "loss" in e]
report = {{"rank": int(os.environ["RANK"]), "world": result["trainer"].args.world_size, "digest": digest,
          "first_loss": losses[0], "eval_log_loss": result["metrics"]["eval_log_loss"]}}
with open(os.path.join({out!r}, "rank%d.json" % report["rank"]), "w") as f:
    json.dump(report, f)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("launcher", ["torchrun", "accelerate"])
def test_two_processes_end_with_identical_weights_and_an_honest_loss(launcher, data, tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE.format(root=str(ROOT), out=str(tmp_path)))
    out = tmp_path / "out"
    bin_dir = Path(sys.executable).parent
    port = str(free_port())  # a fixed port fails when another run (or a CI neighbour) holds it
    if launcher == "torchrun":
        command = [str(bin_dir / "torchrun"), "--nproc_per_node", "2", "--master_port", port]
    else:
        command = [str(bin_dir / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines",
                   "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", port]
    args = [*TINY, "--train_file", str(data["train"]), "--validation_file", str(data["validation"]),
            "--output_dir", str(out), "--max_steps", "2", "--save_strategy", "no", "--do_train", "--do_eval",
            "--content_pairs_weight", "0"]  # the vote loss alone: its first value is known (log 3)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([*command, str(probe), *args], capture_output=True, text=True, timeout=240, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in reports] == [2, 2]
    assert reports[0]["digest"] == reports[1]["digest"], "the ranks ended with different weights"
    # At initialisation the head is near zero: every class ~1/3, so the true log loss of the first step is ~log 3.
    # A loss scaled by the number of processes would read ~2 log 3.
    assert reports[0]["first_loss"] == pytest.approx(math.log(3), abs=0.05)
    # Evaluation gathers the two shards without duplicates: the saved model's log loss on the validation set.
    probs = pipeline_probabilities(out, data["validation"])
    labels = [("model_a", "model_b", "tie").index(json.loads(line)["winner"])
              for line in data["validation"].read_text().splitlines()]
    expected = -sum(math.log(p[y]) for p, y in zip(probs, labels)) / len(labels)
    assert reports[0]["eval_log_loss"] == pytest.approx(expected, abs=1e-4)


def client(code: str, hub: HubServer, home: Path, cwd: Path) -> subprocess.CompletedProcess:
    """Run a Hub client in a fresh interpreter (huggingface_hub reads HF_ENDPOINT at import), its own cache."""
    env = {**os.environ, **hub.client_env(), "HF_HOME": str(home)}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=240)


def test_push_to_hub_then_load_model_pipeline_and_dataset_from_the_hub(data, tmp_path):
    from conftest import PROJECT_MODULES

    out = tmp_path / "out"
    with HubServer() as hub:
        env = {**os.environ, **hub.client_env(token="hf_secret_token_123"), "HF_HOME": str(tmp_path / "home")}
        run = subprocess.run(
            [sys.executable, str(ROOT / "train.py"), *TINY, *files_args(data), "--output_dir", str(out),
             "--max_steps", "2", "--save_steps", "1", "--push_to_hub", "--hub_model_id", "user/arena-tiny"],
            env=env, capture_output=True, text=True, timeout=240)
        assert run.returncode == 0, run.stderr[-3000:]
        assert "hf_secret_token_123" not in run.stdout + run.stderr
        pushed = hub.files("user/arena-tiny")
        assert REPO_FILES | {"predictions.csv", "training_curve.png", "eval_results.json"} <= set(pushed)
        assert not [p for p in pushed if p.startswith("checkpoint-")], "checkpoints must stay local"
        assert pushed["model.safetensors"] == (out / "model.safetensors").read_bytes()

        # Load back in a fresh interpreter where the project's modules cannot be imported (remote code only); then
        # push a dataset with DatasetDict.push_to_hub and load it back with load_dataset (same interpreter: one
        # start-up less).
        blocker = "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in PROJECT_MODULES)
        code = blocker + f"""
import json
import datasets
from transformers import AutoModel, pipeline
model = AutoModel.from_pretrained("user/arena-tiny", trust_remote_code=True)
judge = pipeline("arena-preference", model="user/arena-tiny", trust_remote_code=True)
out = judge({{"prompt": "What is 2+2?", "response_a": "4", "response_b": "5"}})

labels = datasets.ClassLabel(names=["winner_model_a", "winner_model_b", "winner_tie"])
rows = [json.loads(line) for line in open({str(data['train'])!r})]
table = {{"id": [r["id"] for r in rows], "prompt": [[r["prompt"]] for r in rows],
          "label": [["model_a", "model_b", "tie"].index(r["winner"]) for r in rows]}}
features = datasets.Features({{"id": datasets.Value("int64"), "prompt": datasets.List(datasets.Value("string")),
                               "label": labels}})
pushed = datasets.Dataset.from_dict(table, features=features).train_test_split(test_size=0.25, seed=0)
pushed.push_to_hub("user/arena-battles")
loaded = datasets.load_dataset("user/arena-battles")
same = all(loaded[s].to_list() == pushed[s].to_list() for s in ("train", "test"))
print(json.dumps({{"class": type(model).__name__, "result": out, "features": str(loaded["train"].features["label"]),
                  "splits": {{s: len(d) for s, d in loaded.items()}}, "same_rows": same}}))
"""
        loaded = client(code, hub, tmp_path / "home-load", cwd=tmp_path)
        assert loaded.returncode == 0, loaded.stderr[-3000:]
        answer = json.loads(loaded.stdout.strip().splitlines()[-1])
        assert answer["class"] == "ArenaModel"
        probs = [answer["result"][k] for k in ("winner_model_a", "winner_model_b", "winner_tie")]
        assert sum(probs) == pytest.approx(1, abs=1e-5)
        assert answer["splits"] == {"train": 18, "test": 6} and answer["same_rows"]
        assert "winner_tie" in answer["features"]


def test_hub_server_fault_injection_fails_the_next_requests(tmp_path):
    with HubServer() as hub:
        hub.fail_next(2, status=500, match="/api/repos/create")
        code = """
from huggingface_hub import create_repo
from huggingface_hub.errors import HfHubHTTPError
for attempt in range(3):
    try:
        print(create_repo("user/flaky").repo_id)
    except HfHubHTTPError as err:
        print(err.response.status_code)
"""
        run = client(code, hub, tmp_path / "home", cwd=tmp_path)
        assert run.returncode == 0, run.stderr[-2000:]
        assert run.stdout.split() == ["500", "500", "user/flaky"]


def test_user_errors_are_one_line_and_exit_nonzero(data, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ARENA_DEBUG", raising=False)
    cases = [
        (["--train_file", str(tmp_path / "missing.jsonl"), "--output_dir", str(tmp_path)], 1, "missing.jsonl"),
        ([*TINY, "--head", "nope", "--output_dir", str(tmp_path)], 2, "--head"),
        (["--no_such_option", "1"], 2, "--no_such_option"),
        ([*TINY, "--max_length", "1024", "--model_name_or_path", "embedded:minilm-l6", "--do_predict",
          "--test_file", str(data["test"]), "--output_dir", str(tmp_path)], 1, "512"),
    ]
    for argv, status, named in cases:
        with pytest.raises(SystemExit) as exit_info:
            train.main(argv)
        err = capsys.readouterr().err.strip()
        assert exit_info.value.code == status, (argv, err)
        last = err.splitlines()[-1]  # progress bars may come first; the reason is one line
        assert last.startswith("train.py: error:") and named in last, err
        assert "Traceback" not in err

    monkeypatch.setenv("ARENA_DEBUG", "1")  # the debug switch shows the real exception
    with pytest.raises(FileNotFoundError):
        train.main(["--train_file", str(tmp_path / "missing.jsonl"), "--output_dir", str(tmp_path)])


def test_recipe_defaults_and_the_main_job_when_nothing_is_given():
    model_args, data_args, args = parse_args([])
    assert model_args.model_name_or_path == "embedded:minilm-l6" and model_args.freeze_encoder is True
    frozen = {"optim": "adagrad", "learning_rate": 0.1, "weight_decay": 0.02, "num_train_epochs": 10,
              "per_device_train_batch_size": 32}
    assert {key: getattr(args, key) for key in frozen} == frozen
    assert (args.eval_strategy, args.eval_steps) == ("steps", 2000)
    assert (args.metric_for_best_model, args.greater_is_better) == ("log_loss", False)
    assert Path(args.output_dir) == Path("out/arena-minilm")
    assert Path(data_args.train_file) == ROOT / "examples" / "train.jsonl"
    assert Path(data_args.test_file) == ROOT / "examples" / "test.csv"
    assert (args.do_train, args.do_eval, args.do_predict) == (True, True, True)

    # Fine-tuning the whole encoder: the seed recipe's values come from examples/finetune.yaml.
    model_args, _, args = parse_args([str(ROOT / "examples" / "finetune.yaml")])
    assert model_args.freeze_encoder is False
    assert (args.learning_rate, args.num_train_epochs, args.per_device_train_batch_size) == (5e-5, 5, 2)
    assert (args.optim, args.weight_decay) == ("adamw_torch", 0.0)

    # Naming a model to predict with: nothing else runs, and no example data is implied.
    _, data_args, args = parse_args(["--model_name_or_path", "out/x", "--do_predict", "--test_file", "t.csv"])
    assert (args.do_train, args.do_eval, args.do_predict) == (False, False, True)
    assert data_args.train_file is None and args.output_dir == "out/arena-x"


def test_a_yaml_or_json_file_takes_the_same_keys(tmp_path):
    config = {"model_name_or_path": "embedded:tiny-deberta", "head": "rank", "max_length": 64,
              "train_file": "a.jsonl", "learning_rate": 1e-4, "output_dir": str(tmp_path / "o")}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "c.json").write_text(json.dumps(config))
    for name in ("c.yaml", "c.json"):
        model_args, data_args, args = parse_args([str(tmp_path / name)])
        assert (model_args.head, model_args.max_length, data_args.train_file) == ("rank", 64, "a.jsonl")
        # the recipe's default for what is not given
        assert args.learning_rate == 1e-4 and args.num_train_epochs == ArenaTrainingArguments.num_train_epochs
        assert (args.do_train, args.do_eval, args.do_predict) == (True, True, False)
    (tmp_path / "tune.yaml").write_text(yaml.safe_dump({**config, "freeze_encoder": False}))
    model_args, _, args = parse_args([str(tmp_path / "tune.yaml")])
    assert model_args.freeze_encoder is False and (args.learning_rate, args.num_train_epochs) == (1e-4, 10)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**config, "hed": "rank"}))
    with pytest.raises(UserError, match="hed"):
        parse_args([str(tmp_path / "bad.yaml")])


def test_metric_module_loads_offline_by_path_and_scores():
    import evaluate

    metric = evaluate.load(str(METRIC_PATH), keep_in_memory=True)
    perfect = metric.compute(predictions=[[1, 0, 0], [0, 1, 0], [0, 0, 1]], references=[0, 1, 2])
    assert perfect["log_loss"] == pytest.approx(0, abs=1e-6) and perfect["accuracy"] == 1 == perfect["f1_macro"]
    uniform = metric.compute(predictions=[[1 / 3] * 3] * 4, references=[0, 1, 2, 2])
    assert uniform["log_loss"] == pytest.approx(math.log(3))
    mixed = metric.compute(predictions=[[0.7, 0.2, 0.1], [0.2, 0.5, 0.3]], references=[0, 2])
    assert mixed["log_loss"] == pytest.approx(-(math.log(0.7) + math.log(0.3)) / 2)
    assert (mixed["accuracy"], mixed["f1_winner_model_a"], mixed["f1_winner_tie"]) == (0.5, 1.0, 0.0)
    with pytest.raises(ValueError, match="references"):
        metric.compute(predictions=[[0.5, 0.5, 0]], references=[3])


def test_a_failed_save_leaves_the_previous_model_intact(tmp_path, monkeypatch):
    from arena_preference.model_loading import load_model
    from pipeline_arena import ArenaPreferencePipeline

    model, tokenizer = load_model("embedded:tiny-deberta", max_length=64)
    save_repo(model, tokenizer, tmp_path / "repo")
    before = {p.name: p.read_bytes() for p in (tmp_path / "repo").iterdir()}

    def broken_save(self, folder, **kwargs):
        Path(folder, "model.safetensors").write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(ArenaPreferencePipeline, "save_pretrained", broken_save)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    with pytest.raises(OSError, match="disk full"):
        save_repo(model, tokenizer, tmp_path / "repo")
    assert {p.name: p.read_bytes() for p in (tmp_path / "repo").iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["repo"], "staging folder left behind"


@pytest.mark.parametrize("freeze", ["true", "false"])
def test_length_grouping_groups_battles_by_their_longer_tower(freeze, data, tmp_path):
    """--train_sampling_strategy group_by_length: Trainer reads the `length` column (the longer tower of each
    battle), which it would otherwise look for in an `input_ids` column that two-tower battles do not have."""
    from transformers.trainer_pt_utils import LengthGroupedSampler

    result = train.main([*TINY, *files_args(data), "--freeze_encoder", freeze, "--train_sampling_strategy",
                         "group_by_length", "--max_steps", "2", "--save_strategy", "no", "--eval_strategy", "no",
                         "--output_dir", str(tmp_path / "out")])
    trainer = result["trainer"]
    assert trainer.state.global_step == 2
    loader = trainer.get_train_dataloader()
    sampler = loader.batch_sampler.sampler  # accelerate keeps the sampler inside its batch sampler
    assert isinstance(sampler, LengthGroupedSampler)
    assert sampler.lengths == trainer.train_dataset["length"]
    if freeze == "false":
        lengths = [max(len(a), len(b)) for a, b in zip(trainer.train_dataset["input_ids_a"],
                                                        trainer.train_dataset["input_ids_b"])]
        assert sampler.lengths == lengths


def test_space_dir_writes_a_gradio_space_of_the_trained_model(data, tmp_path):
    pytest.importorskip("gradio", reason="--space_dir needs the demo extra: pip install 'arena-preference[demo]'")
    train.main([*TINY, *files_args(data), "--do_train", "--eval_strategy", "no", "--max_steps", "1",
                "--output_dir", str(tmp_path / "out"), "--space_dir", str(tmp_path / "space")])
    space = tmp_path / "space"
    header = (space / "README.md").read_text().split("---")[1]
    assert "sdk: gradio" in header and "app_file: app.py" in header
    assert (space / "app.py").is_file() and (space / "requirements.txt").is_file()


def test_predictions_record_the_precision_they_ran_in(trained):
    _, result = trained
    predict_results = json.loads((result["output_dir"] / "predict_results.json").read_text())
    from precision_arena import resolve_precision

    assert predict_results["predict_precision"] == resolve_precision("auto")  # on AVX2 CPUs: onnx-fp32


def test_style_control_adds_the_content_only_columns_to_the_predictions(trained, data, tmp_path):
    _, result = trained
    train.main(["--model_name_or_path", str(result["output_dir"]), "--do_predict", "--test_file", str(data["test"]),
                "--output_dir", str(tmp_path), "--style_control", "--disable_tqdm", "true"])
    rows = read_predictions(tmp_path / "predictions.csv")
    assert rows[0][4:] == [f"style_controlled_{label}" for label in ("winner_model_a", "winner_model_b", "winner_tie")]
    for row in rows[1:]:
        assert sum(float(v) for v in row[4:]) == pytest.approx(1, abs=1e-5)
