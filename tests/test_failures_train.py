"""Faults around train.py and saved models: bad data on the command line, a run killed with SIGKILL and resumed,
checkpoints and model folders cut short, model files that are missing, truncated or of another model type, no
unpickling, tokens kept out of logs, and a Hub that answers 500 or hangs during --push_to_hub.

test_train.py already covers: resuming from a copied complete checkpoint, a save that fails while staging, a
successful push, option errors (one line, exit 2) and ARENA_DEBUG; none of that is repeated here."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from arena_preference import train  # noqa: E402
from arena_preference import hub_io  # noqa: E402
from arena_preference import training_arguments  # noqa: E402
from hub_server import HubServer  # noqa: E402

EXAMPLES = ROOT / "examples"
# 48 training battles, batch 4: 12 steps an epoch, so step 24 ends the second epoch and a resume mid-run must
# also skip the right batches of a reshuffled epoch.
RUN = ["--model_name_or_path", "embedded:tiny-deberta", "--max_length", "32", "--train_file",
       str(EXAMPLES / "train.jsonl"), "--validation_file", str(EXAMPLES / "validation.jsonl"), "--do_train",
       "--do_eval", "--eval_strategy", "no", "--save_steps", "4", "--save_total_limit", "10", "--max_steps", "24",
       "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "16", "--logging_steps", "4",
       "--seed", "7", "--disable_tqdm", "true", "--freeze_encoder", "false", "--optim", "adamw_torch",
       "--learning_rate", "5e-5", "--weight_decay", "0"]  # fine-tuning (examples/finetune.yaml): steps slow enough to kill
# One thread: the same arithmetic in every run, and tiny models are faster so on a busy 2-core runner.
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1",
       "PYTHONUNBUFFERED": "1"}
ENV.pop("ARENA_DEBUG", None)
# Resumed and uninterrupted runs compute the same steps from the same restored RNG state; measured: identical to
# the last digit. The stated tolerance leaves room for other BLAS builds.
TOLERANCE = 1e-4

# huggingface_hub waits 1, 2, 4, 8, 8 s between its 5 retries; the test runs train.py with those sleeps divided by
# 50 (the retries themselves, and their number, are unchanged).
FAST_RETRIES = """
import runpy, sys, time
import huggingface_hub.utils._http as http

class FastSleep:
    def __getattr__(self, name):
        return getattr(time, name)

    @staticmethod
    def sleep(seconds):
        time.sleep(seconds / 50)

http.time = FastSleep()
sys.argv = ["train.py", *sys.argv[1:]]
runpy.run_path("train.py", run_name="__main__")
"""


def train_process(args: list[str], env: dict | None = None, fast_retries: bool = False, **kwargs):
    command = [sys.executable, "-c", FAST_RETRIES] if fast_retries else [sys.executable, str(ROOT / "train.py")]
    return [*command, *args], {"cwd": ROOT, "env": {**ENV, **(env or {})}, "text": True, **kwargs}


def run_train(args: list[str], env: dict | None = None, fast_retries: bool = False, timeout: int = 300):
    command, options = train_process(args, env, fast_retries)
    return subprocess.run(command, capture_output=True, timeout=timeout, **options)


def last_line(stderr: str) -> str:
    return stderr.strip().splitlines()[-1]


def final_state(folder: Path) -> tuple[int, float, dict[str, torch.Tensor]]:
    state = json.loads((folder / "trainer_state.json").read_text())
    metrics = json.loads((folder / "eval_results.json").read_text())
    return state["global_step"], metrics["eval_log_loss"], load_file(folder / "model.safetensors")


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    """The reference: the run trained start to end, then evaluated and saved."""
    out = tmp_path_factory.mktemp("uninterrupted") / "out"
    result = run_train([*RUN, "--output_dir", str(out)])
    assert result.returncode == 0, result.stderr[-3000:]
    return out


# --- a killed run ----------------------------------------------------------------------------------------------------


def cut_short(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_a_run_killed_with_sigkill_resumes_to_the_same_step_and_evaluation(uninterrupted, tmp_path):
    out = tmp_path / "out"
    command, options = train_process([*RUN, "--output_dir", str(out)])
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **options)
    marker = out / "checkpoint-8" / "trainer_state.json"  # written last: checkpoint-8 is complete
    deadline = time.monotonic() + 240
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    stderr = process.communicate()[1]
    assert process.returncode == -signal.SIGKILL, f"the run ended before it was killed:\n{stderr[-2000:]}"
    assert not (out / "config.json").exists()  # killed mid-training: no final model yet

    # Two checkpoints newer than any the killed run reached, as a kill or a full disk leaves them: one saved up to
    # its weights only (no trainer_state.json), one whose weights file was cut short.
    complete = out / "checkpoint-8"
    for step in (16, 20):
        shutil.rmtree(out / f"checkpoint-{step}", ignore_errors=True)
        shutil.copytree(complete, out / f"checkpoint-{step}")
        cut_short(out / f"checkpoint-{step}" / "model.safetensors")
    (out / "checkpoint-20" / "trainer_state.json").unlink()

    resumed = run_train([*RUN, "--output_dir", str(out), "--resume_from_checkpoint", "latest"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert re.search(r"not resuming from \S*checkpoint-20: no trainer_state\.json", resumed.stderr)
    assert re.search(r"not resuming from \S*checkpoint-16: model\.safetensors is cut short", resumed.stderr)

    reference_step, reference_loss, reference_weights = final_state(uninterrupted)
    step, loss, weights = final_state(out)
    assert step == reference_step == 24
    assert abs(loss - reference_loss) <= TOLERANCE, (loss, reference_loss)
    assert weights.keys() == reference_weights.keys()
    for name in weights:
        torch.testing.assert_close(weights[name], reference_weights[name], rtol=0, atol=TOLERANCE, msg=name)


def test_incomplete_checkpoints_are_refused_by_path_and_skipped_as_latest(tmp_path):
    out = tmp_path / "out"
    (out / "checkpoint-2").mkdir(parents=True)
    (out / "checkpoint-2" / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    (out / "checkpoint-2" / "trainer_state.json").write_text('{"global_step": 2}')
    (out / "checkpoint-4").mkdir()
    (out / "checkpoint-4" / "trainer_state.json").write_text('{"global_st')  # cut short while being written

    def args(value):
        return SimpleNamespace(resume_from_checkpoint=value, output_dir=str(out))

    assert hub_io.checkpoint_problem(out / "checkpoint-2") is None
    assert hub_io.resolve_resume(args("latest")) == str(out / "checkpoint-2")
    with pytest.raises(hub_io.UserError, match=r"checkpoint-4: incomplete checkpoint: unreadable trainer_state"):
        hub_io.resolve_resume(args(str(out / "checkpoint-4")))
    (out / "checkpoint-2" / "trainer_state.json").unlink()
    with pytest.raises(hub_io.UserError, match=r"no complete checkpoint in .*out \(2 incomplete\)"):
        hub_io.resolve_resume(args("latest"))


def test_a_model_save_interrupted_while_moving_files_in_is_never_loaded(tmp_path, monkeypatch):
    """save_repo removes config.json first and puts it back last; a run killed in between leaves a folder that
    every loader refuses, never a mix of old and new weights."""
    from transformers import AutoModel

    from arena_preference.model_loading import load_model

    model, tokenizer = load_model("embedded:tiny-deberta", max_length=32)
    repo = tmp_path / "repo"
    hub_io.save_repo(model, tokenizer, repo)
    real_replace, moved = os.replace, []

    def killed_after_two(source, destination):
        if len(moved) == 2:
            raise KeyboardInterrupt  # stands for SIGKILL: nothing after this point runs
        moved.append(Path(destination).name)
        real_replace(source, destination)

    monkeypatch.setattr(train.os, "replace", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        hub_io.save_repo(model, tokenizer, repo)
    monkeypatch.setattr(train.os, "replace", real_replace)
    assert len(moved) == 2 and "config.json" not in moved and not (repo / "config.json").exists()
    with pytest.raises(OSError, match=r"repo: no config\.json, so this is not a saved model.*interrupted save"):
        load_model(str(repo))
    with pytest.raises((OSError, ValueError)):
        AutoModel.from_pretrained(str(repo), trust_remote_code=True)

    hub_io.save_repo(model, tokenizer, repo)  # saving again repairs it
    assert load_model(str(repo))[0].config.model_type == "arena-preference"


# --- model files -----------------------------------------------------------------------------------------------------


def break_weights(folder: Path, how: str) -> None:
    weights = folder / "model.safetensors"
    if how == "missing":
        weights.unlink()
    elif how == "truncated":
        cut_short(weights)
    elif how == "empty":
        weights.write_bytes(b"")
    elif how == "other model type":
        (folder / "config.json").write_text(json.dumps({
            "model_type": "bert", "vocab_size": 300, "hidden_size": 32, "num_hidden_layers": 2,
            "num_attention_heads": 4, "intermediate_size": 64}))


MODEL_FILE_ERRORS = {
    "missing": r"no file named model\.safetensors",
    "truncated": r"model\.safetensors: not a complete safetensors file \(.*\); it was cut short",
    "empty": r"model\.safetensors: not a complete safetensors file",
    "other model type": r"of its bert encoder are not in its weights file.*config\.json and the weights belong to "
                        r"different models",
}


@pytest.mark.parametrize("how", list(MODEL_FILE_ERRORS))
def test_broken_model_files_give_a_clear_error_from_load_model_and_the_cli(uninterrupted, tmp_path, capsys, how):
    from arena_preference.model_loading import load_model

    folder = tmp_path / "model"
    shutil.copytree(uninterrupted, folder, ignore=shutil.ignore_patterns("checkpoint-*"))
    break_weights(folder, how)
    with pytest.raises(OSError, match=MODEL_FILE_ERRORS[how]):
        load_model(str(folder))
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--model_name_or_path", str(folder), "--do_predict", "--test_file", str(EXAMPLES / "test.csv"),
                    "--output_dir", str(tmp_path / "pred")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and "Traceback" not in err
    assert re.search(r"^train\.py: error: .*" + MODEL_FILE_ERRORS[how], last_line(err))
    assert not (tmp_path / "pred" / "predictions.csv").exists()


def test_the_pipeline_factory_refuses_a_folder_of_another_model_type(uninterrupted, tmp_path):
    from transformers import pipeline

    folder = tmp_path / "model"
    shutil.copytree(uninterrupted, folder, ignore=shutil.ignore_patterns("checkpoint-*"))
    break_weights(folder, "other model type")
    with pytest.raises(ValueError, match=r"needs an arena-preference model \(ArenaModel\); got BertModel with "
                                         r"config model_type 'bert'"):
        pipeline("arena-preference", model=str(folder), trust_remote_code=True)


UNPICKLING = re.compile(r"\b(?:pickle|cPickle|dill|joblib)\.loads?\(|\bnp\.load\([^)]*allow_pickle=True|"
                        r"\btorch\.load\((?!.*weights_only=True)")


def test_nothing_in_the_project_unpickles_files():
    """Weights are safetensors; torch.load appears only with weights_only=True (Trainer's own resume loads use
    it too: transformers/trainer.py passes weights_only=True for optimizer, scheduler and RNG states)."""
    sources = [p for p in ROOT.rglob("*.py") if not {".venv", ".ci", "build"} & set(p.relative_to(ROOT).parts)]
    assert len(sources) > 10
    offenders = [f"{p.relative_to(ROOT)}:{n}: {line.strip()}" for p in sources
                 for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
                 if UNPICKLING.search(line) and "UNPICKLING" not in line]
    assert not offenders, "unpickling untrusted files:\n" + "\n".join(offenders)


# --- bad data on the command line -------------------------------------------------------------------------------------

KAGGLE = "id,model_a,model_b,prompt,response_a,response_b,winner_model_a,winner_model_b,winner_tie\n"
BAD_TRAIN_FILES = {
    "empty.csv": ("", r"empty\.csv: the file is empty"),
    "header_only.csv": (KAGGLE, r"header_only\.csv: has a header but no rows"),
    "misspelled.csv": ("id,prompt,respone_a,response_b\n1,a,b,c\n", r"missing column\(s\) \['response_a'\]"),
    "bad_json.csv": (KAGGLE + '1,m,n,"[""p""]","[""a""]","[""b""]",1,0,0\n2,m,n,"[""p""","[""a""]","[""b""]",1,0,0\n',
                     r"bad_json\.csv, line 3 \(id 2\), field 'prompt': expected a JSON list"),
    "all_zero.csv": (KAGGLE + '1,m,n,"[""p""]","[""a""]","[""b""]",0,0,0\n',
                     r"all_zero\.csv, line 2 \(id 1\), field 'winner_model_a/winner_model_b/winner_tie'"),
    "unlabeled.jsonl": ("".join(f'{{"id": {i}, "prompt": "p{i}", "response_a": "a", "response_b": "b"}}\n'
                                for i in range(3)), r"the train battles have no labels"),
}


def test_bad_training_files_end_the_cli_with_one_line_naming_file_row_and_field(tmp_path, capsys):
    for name, (content, message) in BAD_TRAIN_FILES.items():
        (tmp_path / name).write_text(content, encoding="utf-8")
        with pytest.raises(SystemExit) as exit_info:
            train.main(["--model_name_or_path", "embedded:tiny-deberta", "--train_file", str(tmp_path / name),
                        "--do_train", "--output_dir", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert exit_info.value.code == 1, (name, err[-2000:])
        assert re.search(r"^train\.py: error: .*" + message, last_line(err)), (name, err[-2000:])
        assert "Traceback" not in err
    assert not (tmp_path / "out" / "config.json").exists()


def test_an_explicit_do_eval_false_is_obeyed(tmp_path):
    """TrainingArguments turns do_eval on whenever eval_strategy is not "no" (the seed default is "steps"); a user's
    `--do_eval false` (or `do_eval: false` in a config file) must still switch evaluation off."""
    argv = ["--train_file", "a.jsonl", "--do_train", "--do_eval", "false"]
    assert (lambda a: (a.do_train, a.do_eval))(training_arguments.parse_args(argv)[2]) == (True, False)
    assert training_arguments.parse_args(argv[:3])[2].do_eval  # not given: evaluation while training, as before
    (tmp_path / "c.yaml").write_text("train_file: a.jsonl\ndo_train: true\ndo_eval: false\n")
    assert not training_arguments.parse_args([str(tmp_path / "c.yaml")])[2].do_eval


def test_skip_invalid_trains_on_the_good_rows_and_a_labeled_test_file_is_predicted(tmp_path, capsys):
    good = [json.loads(line) for line in (EXAMPLES / "train.jsonl").read_text().splitlines()[:8]]
    bad = [{**good[0], "id": 900, "winner": "model_c"}, {**good[1]},  # an unknown winner, a duplicate id
           {**good[2], "id": 901, "response_a": [good[2]["response_a"], "extra turn"]}]
    train_file = tmp_path / "train.jsonl"
    train_file.write_text("".join(json.dumps(r) + "\n" for r in good[:4] + bad + good[4:]))
    test_file = tmp_path / "test.csv"  # a test file that still has its label columns: they are ignored
    shutil.copy(EXAMPLES / "test.csv", test_file)
    lines = test_file.read_text().splitlines()
    test_file.write_text("\n".join([lines[0] + ",winner_model_a,winner_model_b,winner_tie"] +
                                   [line + ",0,1,0" for line in lines[1:]]) + "\n")
    with pytest.raises(SystemExit):  # without --skip_invalid the first bad row stops the run
        train.main(["--model_name_or_path", "embedded:tiny-deberta", "--train_file", str(train_file), "--do_train",
                    "--output_dir", str(tmp_path / "out")])
    assert "line 5 (id 900), field 'winner'" in capsys.readouterr().err
    result = train.main(["--model_name_or_path", "embedded:tiny-deberta", "--max_length", "32", "--train_file",
                         str(train_file), "--skip_invalid", "--do_train", "--max_steps", "1", "--eval_strategy", "no",
                         "--do_predict", "--test_file", str(test_file), "--output_dir", str(tmp_path / "out"),
                         "--disable_tqdm", "true"])
    assert result["metrics"]["train_samples"] == 8
    predictions = (tmp_path / "out" / "predictions.csv").read_text().splitlines()
    assert predictions[0] == "id,winner_model_a,winner_model_b,winner_tie" and len(predictions) == len(lines)


# --- the Hub fails ---------------------------------------------------------------------------------------------------

TOKEN = "hf_FailureTestSecret_7f3a9c"
PUSH = ["--do_train", "false", "--push_to_hub", "--hub_model_id", "user/arena-tiny", "--log_level", "debug"]


def test_a_failed_push_says_so_keeps_the_output_and_a_second_push_succeeds(uninterrupted, tmp_path):
    """The Hub hangs on the first two preupload requests (longer than the 1 s timeout) and answers 500 to the
    rest: train.py gives up after huggingface_hub's 5 retries with one line, the output folder is unchanged, and
    the command that line suggests then pushes it. The token appears in no log, at debug verbosity."""
    out = tmp_path / "out"
    shutil.copytree(uninterrupted, out)
    before = snapshot(out)
    with HubServer() as hub:
        env = {**hub.client_env(token=TOKEN), "HF_HUB_DOWNLOAD_TIMEOUT": "1", "HF_HUB_VERBOSITY": "debug",
               "HF_HOME": str(tmp_path / "home")}
        hub.fail_next(2, status=500, hang=3, match="/preupload/")
        hub.fail_next(100, status=500, match="/preupload/")
        failed = run_train(["--model_name_or_path", str(out), "--output_dir", str(out), *PUSH], env,
                           fast_retries=True)
        assert failed.returncode == 1, failed.stderr[-3000:]
        reason = last_line(failed.stderr)
        assert reason.startswith("train.py: error: --push_to_hub user/arena-tiny: the upload failed after "
                                 "huggingface_hub's retries"), reason
        assert "'timed out' thrown while requesting POST" in failed.stderr  # the hangs, retried like the 500s
        assert "HfHubHTTPError: Server error '500 Internal Server Error'" in reason
        assert "Traceback" not in failed.stderr
        attempts = [path for method, path in hub.state.requests if "/preupload/" in path]
        assert len(attempts) == 6  # the first try and huggingface_hub's 5 retries
        assert hub.files("user/arena-tiny") == {}
        assert snapshot(out) == before

        hub.state.faults.clear()
        suggested = re.search(r"python train\.py (.*?) \(ARENA_DEBUG", reason).group(1).split()
        pushed = run_train([*suggested, "--log_level", "debug"], env, fast_retries=True)
        assert pushed.returncode == 0, pushed.stderr[-3000:]
        files = hub.files("user/arena-tiny")
        assert files["model.safetensors"] == (out / "model.safetensors").read_bytes()
        assert {"config.json", "README.md", "modeling_arena.py", "tokenizer.json"} <= set(files)
        assert not [p for p in files if p.startswith(("checkpoint-", "."))]
        assert snapshot(out) == before
    for run in (failed, pushed):
        assert TOKEN not in run.stdout + run.stderr


def test_a_hub_that_never_answers_ends_the_push_with_the_timeout_named(tmp_path, monkeypatch):
    """When every retry times out, the last error is the HTTP client's ReadTimeout (not an OSError): still one
    clear UserError. huggingface_hub itself is replaced here: the real retry loop is exercised above."""
    import httpx2
    import huggingface_hub

    def never_answers(**kwargs):
        raise httpx2.ReadTimeout("timed out")

    monkeypatch.setattr(huggingface_hub, "create_repo", lambda repo_id, **kwargs: SimpleNamespace(repo_id=repo_id))
    monkeypatch.setattr(huggingface_hub, "upload_folder", never_answers)
    args = SimpleNamespace(hub_model_id="user/x", hub_token=None, hub_private_repo=None, hub_revision=None)
    with pytest.raises(hub_io.UserError, match=r"^--push_to_hub user/x: the upload failed after huggingface_hub's "
                                              r"retries \(ReadTimeout: timed out\); .*out is complete and unchanged"):
        hub_io.push(tmp_path / "out", args)


def test_the_hub_token_never_reaches_the_disk(tmp_path):
    """--hub_token stays in memory: Trainer pickles its arguments into every checkpoint (training_args.bin), and no
    file of the output folder may carry the token."""
    out = tmp_path / "out"
    train.main(["--model_name_or_path", "embedded:tiny-deberta", "--max_length", "32", "--train_file",
                str(EXAMPLES / "train.jsonl"), "--do_train", "--eval_strategy", "no", "--max_steps", "2",
                "--save_steps", "1", "--disable_tqdm", "true", "--hub_token", "hf_NotARealTokenButSecret",
                "--output_dir", str(out)])
    files = [path for path in out.rglob("*") if path.is_file()]
    assert any(path.name == "training_args.bin" for path in files)
    assert not [path for path in files if b"hf_NotARealTokenButSecret" in path.read_bytes()]


# --- a diverged model is never saved, predicted or served ----------------------------------------------------------


@pytest.mark.parametrize("learning_rate", ["1e38", "1e9"])
def test_a_diverged_run_stops_with_a_clear_line_and_saves_nothing(tmp_path, capsys, learning_rate):
    """lr 1e38 makes NaN weights, lr 1e9 losses in the billions: either stops the run before it saves or predicts."""
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--model_name_or_path", "embedded:tiny-deberta", "--max_length", "32", "--train_file",
                    str(EXAMPLES / "train.jsonl"), "--test_file", str(EXAMPLES / "test.csv"), "--do_train",
                    "--do_eval", "false", "--do_predict", "--learning_rate", learning_rate, "--logging_steps", "1",
                    "--disable_tqdm", "true", "--output_dir", str(out)])
    assert exit_info.value.code == 1
    assert re.search(r"^train\.py: error: training diverged at step \d+: ", last_line(capsys.readouterr().err))
    assert not (out / "model.safetensors").exists() and not (out / "predictions.csv").exists()


def test_save_repo_refuses_non_finite_weights(tiny_model, tiny_tokenizer, tmp_path):
    with torch.no_grad():
        tiny_model.encoder.get_input_embeddings().weight[3, 0] = float("nan")
    with pytest.raises(hub_io.UserError, match="non-finite weights"):
        hub_io.save_repo(tiny_model, tiny_tokenizer, tmp_path / "repo")
    assert not (tmp_path / "repo" / "config.json").exists()


def test_a_config_temperature_that_overflows_is_an_error_not_a_nan_winner(uninterrupted, tmp_path):
    from arena_preference.model_loading import load_model
    from huggingface_hub.errors import StrictDataclassError
    from transformers import pipeline

    folder = tmp_path / "model"
    shutil.copytree(uninterrupted, folder, ignore=shutil.ignore_patterns("checkpoint-*"))
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "temperature": 1e-45}))
    with pytest.raises(StrictDataclassError, match=r"temperature=1e-45 must be between 0\.01 and 100"):
        pipeline("arena-preference", model=str(folder), trust_remote_code=True)
    model = load_model(str(uninterrupted))[0]
    with torch.no_grad():  # weights that overflow reach the pipeline's own guard: an error, never a NaN winner
        model.classifier.content.weight.fill_(float("inf"))
    judge = pipeline("arena-preference", model=model, tokenizer=load_model(str(uninterrupted))[1])
    with pytest.raises(ValueError, match="non-finite probabilities"):
        judge({"prompt": "q", "response_a": "a long answer " * 5, "response_b": "b"})


# --- an output folder holds one run's results ----------------------------------------------------------------------


def test_a_run_owns_its_output_folder(uninterrupted, tmp_path, capsys):
    """A folder holding another run is refused (no old predictions beside new weights), also for a prediction run
    with no model named; --overwrite_output_dir empties it first; predicting with a model into its own folder and
    resuming a run are the run's own business."""
    folder = tmp_path / "model"
    shutil.copytree(uninterrupted, folder)
    (folder / "predictions.csv").write_text("id,winner_model_a,winner_model_b,winner_tie\n1,1,0,0\n")
    retrain = ["--model_name_or_path", "embedded:tiny-deberta", "--max_length", "32", "--train_file",
               str(EXAMPLES / "train.jsonl"), "--do_train", "--eval_strategy", "no", "--max_steps", "1",
               "--disable_tqdm", "true", "--output_dir", str(folder)]
    for argv in (retrain, ["--do_predict", "--test_file", str(EXAMPLES / "test.csv"), "--output_dir", str(folder)]):
        with pytest.raises(SystemExit):
            train.main(argv)
        assert "already holds another run's files" in last_line(capsys.readouterr().err)
    train.main([*retrain, "--overwrite_output_dir"])
    assert not (folder / "predictions.csv").exists()
    assert [p.name for p in folder.glob("checkpoint-*")] == ["checkpoint-1"]  # the old run's 4..24 are gone
    train.main(["--model_name_or_path", str(folder), "--do_predict", "--test_file", str(EXAMPLES / "test.csv"),
                "--output_dir", str(folder)])
    assert (folder / "predictions.csv").is_file()


def test_a_staging_folder_left_by_a_killed_save_is_removed_by_the_next_save(tiny_model, tiny_tokenizer, tmp_path):
    stale = tmp_path / ".repo.saving-abc123"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    hub_io.save_repo(tiny_model, tiny_tokenizer, tmp_path / "repo")
    assert not stale.exists() and [p.name for p in tmp_path.iterdir()] == ["repo"]


def test_a_model_whose_tokenizer_was_deleted_or_replaced_is_refused(uninterrupted, tmp_path, capsys):
    """Without tokenizer.json transformers falls back to a 7-token tokenizer that reads every word as [UNK]; the
    vocabulary's fingerprint saved in config.json catches it in load_model, the CLI and the remote-code pipeline."""
    from arena_preference.model_loading import load_model
    from transformers import pipeline

    folder = tmp_path / "model"
    shutil.copytree(uninterrupted, folder, ignore=shutil.ignore_patterns("checkpoint-*"))
    assert json.loads((folder / "config.json").read_text())["tokenizer_fingerprint"]
    (folder / "tokenizer.json").unlink()
    with pytest.raises(OSError, match="is not the one it was saved with"):
        load_model(str(folder))
    with pytest.raises(ValueError, match="is not the one it was saved with"):
        pipeline("arena-preference", model=str(folder), trust_remote_code=True)
    with pytest.raises(SystemExit):
        train.main(["--model_name_or_path", str(folder), "--do_predict", "--test_file", str(EXAMPLES / "test.csv"),
                    "--output_dir", str(tmp_path / "pred")])
    assert "is not the one it was saved with" in last_line(capsys.readouterr().err)


def test_a_config_whose_head_was_removed_is_refused_not_given_a_random_head(uninterrupted, tmp_path, capsys):
    """A rank model whose config.json lost `head` would load as classify with a freshly drawn head: its weights do
    not cover that model, so loading fails (load_model, the Auto class, the CLI)."""
    from arena_preference.model_loading import load_model
    from transformers import AutoModel

    rank = tmp_path / "rank"
    train.main(["--model_name_or_path", "embedded:tiny-deberta", "--max_length", "32", "--head", "rank",
                "--train_file", str(EXAMPLES / "train.jsonl"), "--do_train", "--eval_strategy", "no",
                "--max_steps", "1", "--save_strategy", "no", "--disable_tqdm", "true", "--output_dir", str(rank)])
    config = json.loads((rank / "config.json").read_text())
    del config["head"]
    (rank / "config.json").write_text(json.dumps(config))
    with pytest.raises(OSError, match=r"weights do not match its config\.json \(head='classify'\)"):
        load_model(str(rank))
    with pytest.raises(OSError, match="weights do not match"):
        AutoModel.from_pretrained(str(rank), trust_remote_code=True)
    with pytest.raises(SystemExit):
        train.main(["--model_name_or_path", str(rank), "--do_predict", "--test_file", str(EXAMPLES / "test.csv"),
                    "--output_dir", str(tmp_path / "pred")])
    assert "weights do not match" in last_line(capsys.readouterr().err)
