"""Round three of hostile inputs: one run per output folder (the lock, the README's first command run twice), one clear line for the
last raw errors, and the first hour's rough edges. Each test names the case of the issue it covers."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT

EXAMPLES = ROOT / "examples"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1",
       "PYTHONUNBUFFERED": "1"}
ENV.pop("ARENA_DEBUG", None)
TINY = ["--model_name_or_path", "embedded:tiny-deberta", "--max_length", "32", "--eval_strategy", "no",
        "--disable_tqdm", "true", "--report_to", "none"]


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1] if text.strip() else ""


def one_line_error(capsys, argv: list[str]) -> str:
    """train.main(argv) must end with exit status 1 and one `train.py: error:` line, no traceback."""
    from arena_preference import train

    with pytest.raises(SystemExit) as exit_info:
        train.main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 1, err[-2000:]
    assert "Traceback" not in err
    line = last_line(err)
    assert line.startswith("train.py: error: "), err[-2000:]
    return line


# ----------------------------------------------------------------------------------------- one run per folder
# A process that takes the output-folder lock, says so, and waits to be killed.
HOLD_LOCK = """
import sys, time
sys.path.insert(0, {root!r})
from arena_preference.run_folder import OutputFolderLock
lock = OutputFolderLock({folder!r}).acquire()
print("locked", flush=True)
time.sleep(120)
"""


def _holder(folder: Path) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLD_LOCK.format(root=str(ROOT), folder=str(folder))],
                               stdout=subprocess.PIPE, text=True, env=ENV)
    assert process.stdout.readline().strip() == "locked"
    return process


def test_two_train_runs_started_at_once_into_one_folder_one_runs_and_the_other_is_refused(tmp_path):
    """The failure this fixes: both exited 0 and the folder mixed their files. Now the second run to reach the
    folder is refused, naming the folder and the process that holds it; the first one's files are whole."""
    folder = tmp_path / "shared"
    argv = [*TINY, "--train_file", str(EXAMPLES / "train.jsonl"), "--test_file", str(EXAMPLES / "test.csv"),
            "--do_train", "--do_predict", "--save_strategy", "no", "--max_steps", "40", "--output_dir", str(folder)]
    runs = [subprocess.Popen([sys.executable, str(ROOT / "train.py"), *argv], cwd=ROOT, env=ENV, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    results = [(run.pid, *run.communicate(timeout=600), run.returncode) for run in runs]
    codes = sorted(code for *_, code in results)
    assert codes == [0, 1], [err[-1500:] for _, _, err, _ in results]
    (winner, *_), (_, _, refused, _) = sorted(results, key=lambda r: r[3])
    line = last_line(refused)
    assert line.startswith(f"train.py: error: --output_dir {folder} is in use by another run: process {winner} ")
    assert "Traceback" not in refused
    assert not (folder / ".arena-run.lock").exists()  # released on exit
    from arena_preference.run_folder import read_record

    assert read_record(folder)["finished"] is True
    assert (folder / "predictions.csv").is_file() and (folder / "model.safetensors").is_file()


def test_a_lock_held_by_a_live_process_is_refused_and_one_left_by_sigkill_is_taken_over(tmp_path, caplog):
    from arena_preference.run_folder import LOCK_NAME, OutputFolderLock, UserError

    folder = tmp_path / "run"
    holder = _holder(folder)
    try:
        with pytest.raises(UserError, match=rf"--output_dir {folder} is in use by another run: process "
                                            rf"{holder.pid} \("):
            OutputFolderLock(folder).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (folder / LOCK_NAME).exists()  # SIGKILL leaves the file; the kernel dropped the flock
    with caplog.at_level(logging.WARNING, logger="train"):
        with OutputFolderLock(folder):
            assert json.loads((folder / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert f"took over the lock left by process {holder.pid}" in caplog.text and "no longer running" in caplog.text
    assert not (folder / LOCK_NAME).exists()


def test_a_live_holder_is_respected_where_the_filesystem_ignores_flock(tmp_path):
    """Pid liveness backs flock up: a lock file naming a live process of this host (same pid and start time) is
    refused even when no flock is held on it (flock is a no-op on some network filesystems)."""
    from arena_preference.run_folder import LOCK_NAME, OutputFolderLock, UserError, _process_start

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        folder = tmp_path / "run"
        folder.mkdir()
        import socket

        (folder / LOCK_NAME).write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname(),
                                                     "start": _process_start(sleeper.pid), "program": "train.py",
                                                     "started": "then"}))
        with pytest.raises(UserError, match=f"process {sleeper.pid} \\(train.py, started then"):
            OutputFolderLock(folder).acquire()
        # the same record with another start time: the pid was reused by an unrelated process -> taken over
        (folder / LOCK_NAME).write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname(),
                                                     "start": "1", "program": "train.py"}))
        OutputFolderLock(folder).acquire().release()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_filesystem_without_flock_falls_back_to_the_holders_pid(tmp_path, monkeypatch):
    """Some NFS mounts answer flock with ENOLCK ("No locks available"): the run is not stopped by that, and the
    pid record still keeps it out of a folder a live run holds."""
    import errno

    from arena_preference import run_folder

    folder = tmp_path / "run"
    holder = _holder(folder)  # another process, whose record names it

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(run_folder.fcntl, "flock", no_locks)
    try:
        with pytest.raises(run_folder.UserError, match=f"in use by another run: process {holder.pid} "):
            run_folder.OutputFolderLock(folder).acquire()
    finally:
        holder.kill()
        holder.wait()
    with run_folder.OutputFolderLock(folder):  # its process is gone: taken over, flock or not
        assert json.loads((folder / run_folder.LOCK_NAME).read_text())["pid"] == os.getpid()


def test_overwrite_output_dir_never_empties_a_folder_another_run_is_writing(tmp_path, capsys):
    """--overwrite_output_dir removes a folder's contents: with the lock checked first, it cannot pull the files
    from under a run in progress."""
    folder = tmp_path / "run"
    holder = _holder(folder)
    try:
        (folder / "model.safetensors").write_bytes(b"being written")
        line = one_line_error(capsys, [*TINY, "--train_file", str(EXAMPLES / "train.jsonl"), "--do_train",
                                       "--overwrite_output_dir", "--output_dir", str(folder)])
        assert f"is in use by another run: process {holder.pid} " in line
        assert (folder / "model.safetensors").read_bytes() == b"being written"
    finally:
        holder.kill()
        holder.wait()


def test_an_output_dir_that_is_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "taken").write_text("a file")
    argv = [*TINY, "--train_file", str(EXAMPLES / "train.jsonl"), "--do_train"]
    line = one_line_error(capsys, [*argv, "--output_dir", str(tmp_path / "taken")])
    assert f"--output_dir {tmp_path / 'taken'}: is a file, not a folder" in line


def test_an_output_dir_that_cannot_be_written_is_one_line(tmp_path, capsys):
    argv = [*TINY, "--train_file", str(EXAMPLES / "train.jsonl"), "--do_train"]
    locked = tmp_path / "read-only"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who writes anywhere (root)")
        line = one_line_error(capsys, [*argv, "--output_dir", str(locked)])
        assert f"--output_dir {locked}: cannot be written (Permission denied)" in line
    finally:
        locked.chmod(0o755)


def test_a_lock_file_cut_short_by_a_kill_mid_write_is_taken_over(tmp_path):
    from arena_preference.run_folder import LOCK_NAME, OutputFolderLock

    folder = tmp_path / "run"
    folder.mkdir()
    (folder / LOCK_NAME).write_text('{"pid": 12')  # a process killed while writing its record
    with OutputFolderLock(folder):
        assert json.loads((folder / LOCK_NAME).read_text())["pid"] == os.getpid()


def test_the_readme_first_command_run_twice_replaces_its_own_run_and_nothing_else(tmp_path, monkeypatch, capsys):
    """`python train.py` with no --output_dir, run again as written, replaces its own finished run in the default
    folder (with a warning); another command into that folder, or any run into a folder named with --output_dir,
    is refused as before."""
    from arena_preference import train

    monkeypatch.chdir(tmp_path)
    argv = [*TINY, "--max_steps", "1", "--save_strategy", "no"]  # no --output_dir: out/arena-tiny-deberta
    train.main(argv)
    folder = tmp_path / "out" / "arena-tiny-deberta"
    (folder / "stale.txt").write_text("left by the first run")  # replaced means emptied first
    capsys.readouterr()
    train.main(argv)  # logs through train.py's own handler (basicConfig(force=True)), on stderr
    assert "holds a finished run of this same command (no --output_dir given): replacing it" in capsys.readouterr().err
    assert (folder / "model.safetensors").is_file() and not (folder / "stale.txt").exists()
    line = one_line_error(capsys, [*argv, "--seed", "3"])  # another command: not the same job
    assert "already holds another run's files" in line
    named = [*argv, "--output_dir", str(tmp_path / "named")]
    train.main(named)
    assert "already holds another run's files" in one_line_error(capsys, named)


def test_an_unfinished_default_run_is_not_replaced(tmp_path, monkeypatch, capsys):
    from arena_preference import train
    from arena_preference.run_folder import RECORD_NAME, read_record

    monkeypatch.chdir(tmp_path)
    argv = [*TINY, "--max_steps", "1", "--save_strategy", "no"]
    train.main(argv)
    folder = tmp_path / "out" / "arena-tiny-deberta"
    (folder / RECORD_NAME).write_text(json.dumps({**read_record(folder), "finished": False}))  # killed mid-run
    assert "already holds another run's files" in one_line_error(capsys, argv)


# ---------------------------------------------------------------------------------------- raw messages, 1 to 8
def test_resuming_a_classify_checkpoint_with_head_rank_is_refused_in_words(tmp_path, capsys):
    """Case 3: torch's "loaded state dict contains a parameter group that doesn't match" becomes one line."""
    from arena_preference import train

    folder = tmp_path / "run"
    base = [*TINY, "--train_file", str(EXAMPLES / "train.jsonl"), "--do_train", "--max_steps", "2",
            "--save_steps", "1", "--output_dir", str(folder)]
    train.main(base)
    line = one_line_error(capsys, [*base, "--max_steps", "4", "--head", "rank", "--resume_from_checkpoint", "latest"])
    assert "that checkpoint is of another model (head='classify' there, 'rank' here)" in line
    assert "(--head classify)" in line and "parameter group" not in line
    train.main([*base, "--max_steps", "3", "--resume_from_checkpoint", "latest"])  # the same model resumes


def test_a_data_file_with_no_action_says_there_is_nothing_to_do(capsys):
    """Case 8: `--train_file x.csv --do_eval false` exited 0 having done nothing."""
    line = one_line_error(capsys, [*TINY, "--train_file", str(EXAMPLES / "train.jsonl"), "--do_eval", "false"])
    assert "nothing to do: --do_eval false leaves --do_train, --do_eval and --do_predict all off" in line
    assert "add --do_train" in line


# ----------------------------------------------------------------------------------------- first-hour edges
def test_short_help_lists_data_output_and_actions_before_model_options_and_says_push_is_once():
    from arena_preference.training_arguments import ArenaArgumentParser

    text = ArenaArgumentParser().format_help()
    order = [text.index(f"\n  --{name} ") for name in ("train_file", "output_dir", "do_train", "do_predict",
                                                        "model_name_or_path")]
    assert order == sorted(order)
    assert text.count("\n  --output_dir ") == 1
    full = ArenaArgumentParser().format_full_help()
    for shown in (text, " ".join(full.split())):
        assert "once, at the end of the run" in " ".join(shown.split()) and "every time the model is saved" not in \
            " ".join(shown.split())
    assert "Not directly used by Trainer" not in text


# -------------------------------------------------------------------------- case 1: a local path that is not there
@pytest.mark.parametrize("path", ["{tmp}/out/arena-minlm", "./arena-minlm", "out/arena-minlm", "{tmp}/empty"])
def test_the_demo_says_no_such_folder_at_once_for_a_mistyped_model_path(tmp_path, monkeypatch, capsys, path):
    """`app.py --model <typo>` tried the Hub for 33 s and printed 70 lines of traceback."""
    from arena_preference import demo, model_loading  # noqa: F401  (imported before the clock starts)

    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "empty").mkdir()  # a folder, but no saved model in it
    started = time.monotonic()
    with pytest.raises(SystemExit) as exit_info:
        demo.main(["--model", path.format(tmp=tmp_path)])
    message = str(exit_info.value.code)
    assert message.startswith(f"app.py: error: --model {path.format(tmp=tmp_path)}: ")
    assert ("no such folder" in message) != ("no config.json" in message)
    assert time.monotonic() - started < 10 and "Traceback" not in capsys.readouterr().err


# ------------------------------------------------------------------ case 2: broken model folders through pipeline()
@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> Path:
    from arena_preference.model_loading import load_model
    from pipeline_arena import ArenaPreferencePipeline

    model, tokenizer = load_model("embedded:tiny-deberta", max_length=32)
    folder = tmp_path_factory.mktemp("saved") / "model"
    ArenaPreferencePipeline(model=model, tokenizer=tokenizer, precision="fp32").save_pretrained(str(folder))
    return folder


class _Evil:
    def __reduce__(self):  # what a malicious pytorch_model.bin does when unpickled
        return (os.system, ("echo unpickled > /dev/null",))


def _truncate(folder: Path) -> None:
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])


def _drop_encoder_config(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    del config["encoder_config"]
    (folder / "config.json").write_text(json.dumps(config))


def _truncate_tokenizer(folder: Path) -> None:
    tokenizer = folder / "tokenizer.json"
    tokenizer.write_bytes(tokenizer.read_bytes()[: tokenizer.stat().st_size // 2])


def _pickled_weights(folder: Path) -> None:
    import pickle

    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Evil()))


@pytest.mark.parametrize(("break_it", "message"), [
    (_truncate, r"model\.safetensors: not a complete safetensors file \(.*\); it was cut short"),
    (_drop_encoder_config, r"config\.json: has no encoder_config, the encoder's architecture .*restore config\.json"),
    (_pickled_weights, r"pytorch_model\.bin: pickled weights are refused: unpickling a file can run any code"),
    (_truncate_tokenizer, r"tokenizer\.json: not a complete JSON file \(Unterminated string .*\); it was cut short"),
])
def test_broken_model_files_are_named_by_the_pipeline_load_model_and_train_py(saved_model, tmp_path, capsys,
                                                                             break_it, message):
    """SafetensorError's "incomplete metadata", transformers' "You set ignore_mismatched_sizes to False", torch's
    "Weights only load failed ... Unsupported operand" and json's bare "Unterminated string" (a tokenizer.json cut
    short) become one line naming the file and what to do."""
    import shutil

    from transformers import pipeline

    from arena_preference.model_loading import load_model

    folder = tmp_path / "model"
    shutil.copytree(saved_model, folder)
    break_it(folder)
    with pytest.raises(Exception, match=message) as raised:
        pipeline("arena-preference", model=str(folder), trust_remote_code=True)
    assert type(raised.value).__name__ == "ModelFilesError"  # not wrapped in "Could not load model ... Traceback"
    assert "Traceback" not in str(raised.value)
    with pytest.raises(OSError, match=message):
        load_model(str(folder))
    line = one_line_error(capsys, ["--model_name_or_path", str(folder), "--do_predict", "--test_file",
                                   str(EXAMPLES / "test.csv"), "--output_dir", str(tmp_path / "pred")])
    assert re.search(message, line)


# --------------------------------------------------------------- case 4: inputs from the pandas / numpy world
def test_pipeline_scores_a_dataframe_by_rows_and_names_what_it_cannot_read(saved_model):
    import numpy as np
    import pandas as pd

    from transformers import pipeline

    judge = pipeline("arena-preference", model=str(saved_model), trust_remote_code=True)
    battles = [{"prompt": "Capital of France?", "response_a": "Paris.", "response_b": "I think it is Lyon."},
               {"prompt": "2+2?", "response_a": "4", "response_b": "5"}]
    expected = judge(battles)
    frame = pd.DataFrame(battles)
    assert judge(frame) == expected  # was: "battle 0: ... got 'str'" (iterating a DataFrame gives its columns)
    assert judge(frame.iloc[1]) == expected[1]  # a row (Series) is one battle
    assert judge(np.array(battles)) == expected
    turns = {"prompt": np.array(["Hi", "And?"]), "response_a": np.array(["a", "b"]), "response_b": ["c", "d"]}
    assert judge(turns) == judge({key: list(value) for key, value in turns.items()})
    with_gap = pd.DataFrame([{**battles[1], "response_b": None}])  # pandas holds the missing answer as NaN
    assert judge(with_gap) == judge([{**battles[1], "response_b": ""}])  # a null cell: an empty turn, as in files
    with pytest.raises(ValueError, match=r"the pandas DataFrame has no column\(s\) \['response_b'\]; expected one "
                                         r"battle per row in columns .*got columns \['prompt', 'response_a', 'answer'"):
        judge(frame.rename(columns={"response_b": "answer"}))
    with pytest.raises(ValueError, match=r"got a tuple of 3 strings; a list or tuple holds several battles: pass one "
                                         r"battle as a dict"):
        judge(("What is 2+2?", "4", "5"))
    with pytest.raises(ValueError, match=r"battle 1: expected a dict with keys .*, got a tuple of 3 values; write "
                                         r"each battle as a dict"):
        judge([battles[0], ("What is 2+2?", "4", "5")])
    import datasets

    numpy_rows = datasets.Dataset.from_list(battles).with_format("numpy")
    assert list(judge(numpy_rows)) == expected
    # Near misses from the same world, each named: a dict of splits, a column instead of a row, rows of a 2-D array
    with pytest.raises(ValueError, match=r"got a datasets\.DatasetDict with splits \['test'\]; pass one split of "
                                         r"battles, e.g\. judge\(dataset\['test'\]\)"):
        judge(datasets.DatasetDict({"test": datasets.Dataset.from_list(battles)}))
    with pytest.raises(ValueError, match=r"the pandas Series has no \['prompt', 'response_a', 'response_b'\]; a Series "
                                         r"is read as one battle"):
        judge(frame["prompt"])
    with pytest.raises(ValueError, match=r"battle 0: expected a dict .*, got a ndarray of 3 values"):
        judge(frame.to_numpy())


# ------------------------------------------------------------------ case 5: labels the same way in every format
def test_unambiguous_labels_read_the_same_in_parquet_csv_and_json(tmp_path):
    import pandas as pd

    from arena_dataset import InvalidBattleError, load_arena

    battle = {"prompt": "p", "response_a": "a", "response_b": "b"}
    float_labels = pd.DataFrame([{"id": i, **battle, "label": float(label)} for i, label in enumerate((0, 1, 2))])
    float_labels.to_parquet(tmp_path / "float.parquet")
    float_labels.astype({"label": str}).to_csv(tmp_path / "float.csv", index=False)  # "0.0", "1.0", "2.0"
    float_labels.to_json(tmp_path / "float.jsonl", orient="records", lines=True)
    one_hot = pd.DataFrame([{"id": i, **battle, "winner_model_a": i == 0, "winner_model_b": i == 1,
                             "winner_tie": i == 2} for i in range(3)])
    one_hot.to_parquet(tmp_path / "bool.parquet")  # a bool column
    one_hot.to_csv(tmp_path / "bool.csv", index=False)  # pandas writes "True"/"False"
    one_hot.to_json(tmp_path / "bool.jsonl", orient="records", lines=True)  # JSON true/false
    for name in ("float.parquet", "float.csv", "float.jsonl", "bool.parquet", "bool.csv", "bool.jsonl"):
        assert load_arena(str(tmp_path / name), split="train")["label"] == [0, 1, 2], name
    ambiguous = pd.DataFrame([{"id": 0, **battle, "label": 1.5}])
    ambiguous.to_parquet(tmp_path / "half.parquet")
    with pytest.raises(InvalidBattleError, match=r"half\.parquet, row 1 \(id 0\), field 'label': expected 0, 1, 2 "):
        load_arena(str(tmp_path / "half.parquet"), split="train")
    two = one_hot.assign(winner_model_b=True)
    two.to_parquet(tmp_path / "two.parquet")
    with pytest.raises(InvalidBattleError, match=r"exactly one 1, got \(True, True, False\)"):
        load_arena(str(tmp_path / "two.parquet"), split="train")


# ------------------------------------------------------- case 6: the row that made a file look like the Kaggle layout
def test_a_plain_csv_with_one_json_list_prompt_names_that_row(tmp_path):
    import csv

    from arena_dataset import InvalidBattleError, load_arena

    rows = [{"id": i, "prompt": f"Question {i}?", "response_a": "a", "response_b": "b", "winner": "model_a"}
            for i in range(20)]
    rows[13].update(prompt='["Hi", "again"]', response_a='["x", "y"]', response_b='["x", "y"]')
    with open(tmp_path / "plain.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(InvalidBattleError, match=r"plain\.csv, line 2 \(id 0\), field 'prompt': expected a JSON "
                                                 r"list .* \(the file reads as the Kaggle layout, every cell a JSON "
                                                 r"list of turns, because the prompt at line 15 is one: for plain text "
                                                 r"columns, fix that row"):
        load_arena(str(tmp_path / "plain.csv"), split="train")


# ------------------------------------------------------------ case 7: max_length with relative positions is bounded
def test_max_length_for_a_relative_position_encoder_is_bounded(saved_model, capsys):
    from transformers import pipeline

    judge = pipeline("arena-preference", model=str(saved_model), trust_remote_code=True)
    battle = {"prompt": "Hi", "response_a": "Hello " * 50, "response_b": "Hey"}
    with pytest.raises(ValueError, match=r"max_length=10000000: this deberta-v2 encoder reads at most 4096 tokens "
                                         r"per tower \(relative positions: .*\); give max_length=4096 or less"):
        judge(battle, max_length=10**7)
    assert judge(battle, max_length=4096)["label"]
    line = one_line_error(capsys, [*TINY, "--max_length", str(10**7), "--train_file", str(EXAMPLES / "train.jsonl"),
                                   "--do_train", "--output_dir", "/nonexistent/never-written"])
    assert "reads at most 4096 tokens per tower" in line


# -------------------------------------------------------------------------------------- first hour: the demo
def test_the_demo_names_the_training_data_and_its_leaderboard_table_has_headers(saved_model, tmp_path):
    import shutil

    from arena_preference import demo
    from arena_preference.training_report import _small_data_caveat

    folder = tmp_path / "model"
    shutil.copytree(saved_model, folder)
    assert demo.training_summary(str(folder)) is None  # no card: nothing is claimed
    (folder / "README.md").write_text("# m\n\n## Training\n\n48 training battles;\nthe head only.\n\n## Limits\n"
                                      f"{_small_data_caveat(48)}\n- It predicts what voters preferred.\n")
    summary = demo.training_summary(str(folder))
    assert summary.startswith("Trained on only 48 battles: enough to show the interface, not to judge answers")
    (folder / "README.md").write_text("## Training\n\n5,000 training battles;\n\n## Limits\n\n- It predicts what "
                                      "the people who voted\n  preferred.\n- Another limit.\n")
    assert demo.training_summary(str(folder)) == "Trained on 5,000 battles. It predicts what the people who voted " \
                                                 "preferred."
    app = demo.build_demo(str(folder))
    table = next(block for block in app.blocks.values() if getattr(block, "elem_id", None) == "leaderboard_table")
    assert list(table.headers) == list(demo.TABLE_HEADERS)
    note = next(block for block in app.blocks.values() if getattr(block, "elem_id", None) == "trained_on")
    assert note.value == demo.training_summary(str(folder))


def test_the_model_card_warns_first_when_the_training_set_is_small():
    from arena_preference.training_report import _small_data_caveat

    assert "Trained on only 48 battles" in _small_data_caveat(48)
    assert _small_data_caveat(5000) == "" and _small_data_caveat(None) == ""


# ------------------------------------------------------------------------------ first hour: the leaderboard CLI
def test_leaderboard_says_where_its_files_went_and_prints_no_future_warning(saved_model, tmp_path, capsys):
    import warnings

    sys.path.insert(0, str(ROOT / "tests"))
    from test_leaderboard import write_responses

    from arena_preference import leaderboard as lb

    responses = write_responses(tmp_path / "answers.jsonl")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lb.main(["--model_name_or_path", str(saved_model), "--responses", str(responses), "--bootstrap", "5",
                 "--cache_dir", "none", "--output_dir", str(tmp_path / "board")])
    assert not [w for w in caught if issubclass(w.category, FutureWarning)], [str(w.message) for w in caught]
    err = capsys.readouterr().err
    assert (f"leaderboard.py: wrote leaderboard.md, leaderboard.csv, leaderboard.json, battles.csv, ratings.png, "
            f"win_rates.png to {tmp_path / 'board'}") in err


def test_the_ratings_plot_draws_an_interval_that_misses_its_rating(tmp_path):
    """A 5-round bootstrap can put the whole interval on one side of the full-data rating; matplotlib refused the
    negative error bar ("'xerr' must not contain negative values") and the run ended without its outputs."""
    from arena_preference import leaderboard as lb

    rows = [{"model": "a", "rating": 1010.0, "ci_low": 1012.0, "ci_high": 1020.0, "battles": 4,
             "style_controlled_rating": None},
            {"model": "b", "rating": 990.0, "ci_low": 980.0, "ci_high": 985.0, "battles": 4,
             "style_controlled_rating": None}]
    lb.plot({"models": rows, "win_rate": {"models": ["a", "b"], "matrix": [[0.5, 0.6], [0.4, 0.5]]}}, tmp_path)
    assert (tmp_path / "ratings.png").stat().st_size > 0


def test_a_second_leaderboard_into_a_folder_being_written_is_refused(saved_model, tmp_path, capsys):
    """The same lock as train.py's: two leaderboards written at once into one folder would mix their files."""
    sys.path.insert(0, str(ROOT / "tests"))
    from test_leaderboard import write_responses

    from arena_preference import leaderboard as lb

    folder = tmp_path / "board"
    holder = _holder(folder)
    try:
        with pytest.raises(SystemExit) as exit_info:
            lb.main(["--model_name_or_path", str(saved_model), "--responses",
                     str(write_responses(tmp_path / "answers.jsonl")), "--bootstrap", "0", "--cache_dir", "none",
                     "--output_dir", str(folder)])
    finally:
        holder.kill()
        holder.wait()
    line = last_line(capsys.readouterr().err)
    assert exit_info.value.code == 1
    assert line.startswith(f"leaderboard.py: error: --output_dir {folder} is in use by another run: process "
                           f"{holder.pid} ")
    assert not (folder / "leaderboard.json").exists()


# A client of the local Hub server (tests/hub_server.py): uploads a broken copy of a model, then loads it back.
HUB_CLIENT = r'''
import pickle, shutil, sys
from pathlib import Path
from huggingface_hub import create_repo, upload_folder
from transformers import pipeline
source, work = Path(sys.argv[1]), Path(sys.argv[2])
for name in ("truncated", "pickled"):
    folder = work / name
    shutil.copytree(source, folder)
    if name == "truncated":  # an upload or download cut short
        weights = folder / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:1000])
    else:
        (folder / "model.safetensors").unlink()
        (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"weights": 1}))
    create_repo(f"user/{name}")
    upload_folder(repo_id=f"user/{name}", folder_path=str(folder))
    try:
        pipeline("arena-preference", model=f"user/{name}", trust_remote_code=True)
        print(name, "loaded")
    except Exception as err:
        print(name, type(err).__name__, " ".join(str(err).split()))
'''


def test_broken_files_in_a_hub_repo_are_named_when_the_load_fails_on_them(saved_model, tmp_path):
    """The model's own check reads a local folder before transformers does; a Hub repo's files exist only once
    downloaded, so the load's failure on them is put in the same words (by repo id)."""
    from hub_server import HubServer

    with HubServer() as hub:
        env = {**ENV, **hub.client_env(), "HF_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "0"}
        run = subprocess.run([sys.executable, "-c", HUB_CLIENT, str(saved_model), str(tmp_path)], env=env,
                             capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in run.stdout.splitlines())
    assert lines["truncated"].startswith("ModelFilesError user/truncated: a weights file is not a complete "
                                         "safetensors file (")
    assert lines["pickled"].startswith("ModelFilesError user/pickled: pickled weights are refused: unpickling a "
                                       "file can run any code in it")


def test_a_folder_written_by_save_to_disk_loads_as_battles(tmp_path):
    """`DatasetDict.save_to_disk(folder)` then `--dataset_name folder`: the Arrow folder was read as data files and
    refused with "state.json: no columns found"."""
    import datasets

    from arena_dataset import load_arena
    from arena_preference import train

    expected = load_arena(str(EXAMPLES / "train.jsonl"), split="train")  # a Dataset as users hold one
    datasets.DatasetDict({"train": expected}).save_to_disk(str(tmp_path / "saved"))
    for source in (tmp_path / "saved", tmp_path / "saved" / "train"):  # a DatasetDict's folder, or one split's
        loaded = load_arena(str(source), split="train")
        assert loaded["label"] == expected["label"] and loaded["prompt"] == expected["prompt"]
    with pytest.raises(ValueError, match=r"saved: no split 'test' in this saved DatasetDict; found splits \['train'\]"):
        load_arena(str(tmp_path / "saved"), split="test")
    result = train.main([*TINY, "--dataset_name", str(tmp_path / "saved"), "--do_train", "--max_steps", "1",
                         "--save_strategy", "no", "--output_dir", str(tmp_path / "out")])
    assert result["metrics"]["train_samples"] == len(expected)  # no evaluation asked: nothing held out
