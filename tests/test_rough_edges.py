"""What a newcomer met first (issue 20): each rough edge, checked where its behaviour changed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT


def test_pipeline_task_is_known_to_a_user_who_only_imported_the_model():
    # A fresh interpreter: in this one, other tests have imported pipeline_arena (which registers the task) already.
    code = (
        "import sys\n"
        "from transformers import pipeline\n"
        "from arena_preference.model_loading import load_model\n"
        "model, tokenizer = load_model('embedded:tiny-deberta', max_length=32)\n"
        "judge = pipeline('arena-preference', model=model, tokenizer=tokenizer)\n"
        "print(type(judge).__name__, sorted(judge({'prompt': 'Hi', 'response_a': 'Hello', 'response_b': 'Hey'})))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "ArenaPreferencePipeline ['label', 'winner_model_a', 'winner_model_b', 'winner_tie']" in result.stdout


@pytest.mark.parametrize("path", ["{tmp}/out/arena-minilm", "./arena-minilm", "out/arena-minilm"])
def test_a_local_model_path_that_does_not_exist_says_no_such_folder(tmp_path, monkeypatch, path):
    from arena_preference.model_loading import load_encoder, load_model

    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()  # "out/arena-minilm" has a Hub id's form; the existing out/ says it is a path
    for load in (load_model, load_encoder):
        with pytest.raises(OSError, match="no such folder"):
            load(path.format(tmp=tmp_path))


def test_unlabeled_training_rows_that_share_one_prompt_say_no_labels(tmp_path, capsys):
    from arena_preference import train

    # One prompt: the split by prompt for evaluation would fail first ("too few to split by prompt").
    path = tmp_path / "unlabeled.jsonl"
    path.write_text("".join(f'{{"id": {i}, "prompt": "same", "response_a": "a{i}", "response_b": "b"}}\n'
                            for i in range(4)))
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--model_name_or_path", "embedded:tiny-deberta", "--train_file", str(path), "--do_train",
                    "--do_eval", "--validation_split_percentage", "25", "--output_dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1, err[-2000:]
    assert "the train battles have no labels" in err and "too few to split" not in err


def test_trainer_finds_no_new_pad_bos_eos_tokens_to_warn_about(tmp_path):
    import transformers
    from transformers.testing_utils import CaptureLogger
    from transformers.trainer_utils import align_special_tokens  # what Trainer calls on every run

    from arena_preference.model_loading import load_model
    from pipeline_arena import ArenaPreferencePipeline

    fresh, tokenizer = load_model("embedded:tiny-deberta", max_length=32)
    ArenaPreferencePipeline(model=fresh, tokenizer=tokenizer).save_pretrained(str(tmp_path / "saved"))
    saved, saved_tokenizer = load_model(str(tmp_path / "saved"))
    for model, tok in ((fresh, tokenizer), (saved, saved_tokenizer)):
        with CaptureLogger(transformers.utils.logging.get_logger("transformers.trainer_utils")) as captured:
            align_special_tokens(model, tok)
        assert "PAD/BOS/EOS" not in captured.out
        assert model.config.pad_token_id == tok.pad_token_id


def test_model_card_names_the_optimizer_as_the_option_is_spelled(tmp_path, tiny_model):
    from arena_preference import training_report
    from arena_preference.training_arguments import parse_args

    model_args, data_args, training_args = parse_args(["--output_dir", str(tmp_path), "--optim", "adagrad"])
    card = str(training_report.model_card(model_args, data_args, training_args, tiny_model.config, {}))
    assert "optimizer adagrad," in card and "OptimizerNames" not in card


def test_a_push_logs_no_http_request_lines(tmp_path):
    import os

    from arena_preference.model_loading import load_model
    from hub_server import HubServer
    from pipeline_arena import ArenaPreferencePipeline

    model, tokenizer = load_model("embedded:tiny-deberta", max_length=32)
    folder = tmp_path / "trained"
    ArenaPreferencePipeline(model=model, tokenizer=tokenizer).save_pretrained(str(folder))
    with HubServer() as hub:
        env = {**os.environ, **hub.client_env(), "HF_HOME": str(tmp_path / "home")}
        run = subprocess.run(
            [sys.executable, str(ROOT / "train.py"), "--model_name_or_path", str(folder), "--output_dir", str(folder),
             "--do_train", "false", "--push_to_hub", "--hub_model_id", "user/arena-quiet"],
            env=env, capture_output=True, text=True, timeout=240)
        assert run.returncode == 0, run.stderr[-3000:]
        assert "model.safetensors" in hub.files("user/arena-quiet")
    assert "pushed" in run.stderr and "HTTP Request" not in run.stdout + run.stderr


def test_frozen_recipe_checkpoints_hold_the_head_only_and_resume_onto_the_encoder(tmp_path):
    import transformers
    from safetensors import safe_open
    from transformers.testing_utils import CaptureLogger

    from arena_preference import recipe
    from encoding_arena import ArenaCollator
    from arena_preference.training_arguments import parse_args

    def trainer(max_steps: int):
        """The Trainer train.py builds for the frozen recipe: recipe's model, battles and trainer_class."""
        model_args, data_args, training_args = parse_args([
            "--model_name_or_path", "embedded:tiny-deberta", "--max_length", "32", "--output_dir", str(tmp_path),
            "--save_steps", "2", "--max_steps", str(max_steps), "--do_train", "--do_eval", "false", "--eval_strategy", "no",
            "--disable_tqdm", "true", "--report_to", "none"])
        splits = recipe.load_splits(data_args, training_args)
        model, tokenizer = recipe.load_model_and_tokenizer(model_args)
        train = recipe.tokenize(splits, tokenizer, model, model_args, data_args, training_args)["train"]
        return recipe.trainer_class(model_args.freeze_encoder)(
            model=model, args=training_args, train_dataset=train, processing_class=tokenizer,
            data_collator=ArenaCollator(pad_token_id=tokenizer.pad_token_id))

    first = trainer(max_steps=2)
    first.train()
    with safe_open(str(tmp_path / "checkpoint-2" / "model.safetensors"), framework="pt") as weights:
        saved = set(weights.keys())
    assert saved and not any(key.startswith("encoder.") for key in saved)

    second = trainer(max_steps=4)
    # transformers' loggers do not propagate to the root logger (caplog): capture Trainer's own.
    with CaptureLogger(transformers.utils.logging.get_logger("transformers.trainer")) as captured:
        second.train(resume_from_checkpoint=str(tmp_path / "checkpoint-2"))
    assert second.state.global_step == 4 and "missing keys" not in captured.out
    # The resumed run's encoder is the frozen one it was built with; its head continued from the checkpoint.
    for name, tensor in first.model.encoder.state_dict().items():
        assert second.model.encoder.state_dict()[name].equal(tensor), name

    from arena_preference.model_loading import load_model

    with pytest.raises(OSError, match="head's weights only"):  # not a model with a random encoder
        load_model(str(tmp_path / "checkpoint-2"))
