"""Train, evaluate, predict and publish an arena preference model: a thin layer over `transformers.Trainer`.

    python train.py                     # the main job: the example battles, embedded:minilm-l6, out/arena-minilm
    python train.py config.yaml         # the same keys as the command line, in a YAML or JSON file
    python train.py --train_file train.csv --model_name_or_path microsoft/deberta-v3-base --head classify \
        --freeze_encoder false --max_length 1024 --output_dir out/deberta_v3_base --fp16
    python train.py --model_name_or_path out/deberta_v3_base --do_predict --test_file test.csv --output_dir out/pred
    torchrun --nproc_per_node 2 train.py ...      accelerate launch --multi_gpu --num_processes 2 train.py ...

The default recipe keeps the encoder frozen: every battle's towers are pooled once (pooled_towers.py, cached) and
the head trains on them (FROZEN_DEFAULTS, chosen by cross-validation on real votes: bench/head_sweep.py, and
bench/quality.py for the recipe's parts).
`--freeze_encoder false` fine-tunes the whole encoder with the seed's values instead (SEED_DEFAULTS).

Every `TrainingArguments` option works (`--fp16`/`--bf16`, `--gradient_accumulation_steps`, `--warmup_steps`,
`--gradient_checkpointing`, `--resume_from_checkpoint PATH|latest`, `--push_to_hub --hub_model_id user/name`, ...),
plus the model and data options below (`python train.py --help`). When none of `--do_train`, `--do_eval`,
`--do_predict` is given, each runs when its data is there. When no data is named at all, the example battles in
examples/ are used (train.jsonl, validation.jsonl, test.csv).

The output directory is a complete Hub repo (weights, tokenizer, remote code, `custom_pipelines`, model card,
results, plots). User errors (a bad file, a bad option) end with one line on stderr and exit status 1 (2 for a
bad option); set ARENA_DEBUG=1 for the full traceback.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
EXAMPLES = ROOT / "examples"
METRIC_PATH = ROOT / "metrics" / "arena_metrics"
DEFAULT_MODEL = "embedded:minilm-l6"
SEED_MAX_LENGTH = 1024

logger = logging.getLogger("train")


@dataclass
class ModelArguments:
    """Which model to train (or to predict with) and how it reads a battle."""

    model_name_or_path: str = field(
        default=DEFAULT_MODEL,
        metadata={"help": "Encoder to start from (Hub id, local path, embedded:minilm-l6, embedded:tiny-deberta), "
                          "or a trained arena model directory / repo to continue from or predict with."},
    )
    head: str | None = field(
        default=None,
        metadata={"help": "classify (concat -> Linear, cross-entropy) or rank (reward per response); a fresh "
                          "model defaults to classify, a trained one keeps its own.", "choices": ["classify", "rank"]},
    )
    rank_loss: str | None = field(
        default=None,
        metadata={"help": "With --head rank: davidson (default; Bradley-Terry with ties) or mse (the seed's "
                          "regression).", "choices": ["davidson", "mse"]},
    )
    pooling: str | None = field(
        default=None, metadata={"help": "mean (default) or cls.", "choices": ["mean", "cls"]}
    )
    max_length: int | None = field(
        default=None,
        metadata={"help": f"Token budget per tower. Default {SEED_MAX_LENGTH} for a fresh model (capped at the "
                          "position limit of encoders with absolute positions: 512 for MiniLM/BERT); a trained "
                          "model keeps its own."},
    )
    truncation: str | None = field(
        default=None,
        metadata={"help": "latest_turns (default: keep the last exchange and as many earlier turns as fit) or "
                          "head (cut the conversation at the end).", "choices": ["latest_turns", "head"]},
    )
    style_features: bool | None = field(
        default=None,
        metadata={"help": "Feed response style features (length, markdown) to the head (fresh model default: "
                          "true)."},
    )
    freeze_encoder: bool | None = field(
        default=None,
        metadata={"help": "true (default): keep the encoder's weights as loaded, pool every battle's towers once "
                          "(pooled_towers.py) and train the head on them, with FROZEN_DEFAULTS (the recipe chosen by "
                          "bench/head_sweep.py and bench/quality.py). false: fine-tune the whole encoder with the "
                          "seed recipe (SEED_DEFAULTS; for a GPU and tens of thousands of battles)."},
    )
    calibrate: bool = field(
        default=False,
        metadata={"help": "After training, fit a temperature on the validation battles (calibration.py), store it "
                          "in config.json and use it for predictions. eval_log_loss stays the uncalibrated figure; "
                          "eval_log_loss_calibrated is fitted on the same battles (one parameter)."},
    )


@dataclass
class DataArguments:
    """Where the battles come from. Any layout arena_dataset.load_arena reads (Kaggle CSV, Hub conversations,
    plain columns; CSV, JSON, JSONL, parquet)."""

    train_file: str | None = field(default=None, metadata={"help": "Labeled battles to train on."})
    validation_file: str | None = field(default=None, metadata={"help": "Labeled battles to evaluate on."})
    test_file: str | None = field(
        default=None, metadata={"help": "Battles to predict (labels not needed) -> output_dir/predictions.csv."}
    )
    dataset_name: str | None = field(
        default=None,
        metadata={"help": "A Hub dataset id or a local dataset folder; its train / validation / test splits are "
                          "used where the *_file options are not given."},
    )
    validation_split_percentage: float = field(
        default=5.0,
        metadata={"help": "Without a validation set: hold out this percentage of the training battles for "
                          "evaluation, split by prompt (all battles on one prompt on the same side). 0: none."},
    )
    swap_augment: bool = field(
        default=False, metadata={"help": "Add every training battle a second time with A and B exchanged."}
    )
    swap_tta: bool = field(
        default=False,
        metadata={"help": "Predict each test battle in both A/B orders and average (test-time augmentation)."},
    )
    skip_invalid: bool = field(
        default=False, metadata={"help": "Skip (and count) rows that do not fit the schema instead of stopping."}
    )


# The seed recipe's values where TrainingArguments' own defaults differ (with --freeze_encoder false, and under
# FROZEN_DEFAULTS for the rest); explicit options and config-file keys win.
SEED_DEFAULTS: dict[str, Any] = {
    "learning_rate": 5e-5,
    "num_train_epochs": 5,
    "per_device_train_batch_size": 2,
    "per_device_eval_batch_size": 8,
    "eval_strategy": "steps",
    "eval_steps": 2000,
    "save_steps": 2000,
    "save_total_limit": 2,
    "optim": "adamw_torch",
    "metric_for_best_model": "log_loss",
    "greater_is_better": False,
    "logging_steps": 10,
    "logging_first_step": True,
    "report_to": "none",
}


# The frozen-encoder recipe (the default): a linear head on pooled towers computed once, so an epoch costs
# seconds. Its weight decay is Adagrad's, which torch applies as an L2 penalty in the gradient; AdamW's decoupled
# decay holds back the 2 x 384 embedding weights less well on a few thousand votes. Chosen by bench/head_sweep.py
# (grouped 5-fold CV on ../shared/data/arena_dev.csv, fold seed 1, not the seed of the reported quality table).
FROZEN_DEFAULTS: dict[str, Any] = {
    "optim": "adagrad",
    "learning_rate": 0.1,
    "weight_decay": 0.02,
    "num_train_epochs": 10,
    "per_device_train_batch_size": 32,
}


class UserError(Exception):
    """A problem with what the user asked for; reported in one line, without a traceback."""


def build_parser():
    """HfArgumentParser over the three dataclasses, reporting a bad option in one line (argparse would print the
    whole usage first, which for TrainingArguments is a page)."""
    from transformers import HfArgumentParser, TrainingArguments

    class OneLineParser(HfArgumentParser):
        def error(self, message: str) -> None:  # argparse API: must not return
            print(f"train.py: error: {message} (python train.py --help lists the options)", file=sys.stderr)
            sys.exit(2)

    return OneLineParser((ModelArguments, DataArguments, TrainingArguments), prog="train.py",
                         description=__doc__.split("\n\n")[0])


def launch_defaults() -> dict[str, Any]:
    """Defaults that depend on the machine: without CUDA (or Apple MPS), use_cpu, which accelerate needs to set up
    multi-process CPU training (without it each torchrun process would silently train alone) and which lets
    --bf16 run on CPU; under torchrun / accelerate launch there, the gloo backend."""
    import torch

    if torch.cuda.is_available() or torch.backends.mps.is_available():
        return {}
    return {"use_cpu": True, **({"ddp_backend": "gloo"} if int(os.environ.get("WORLD_SIZE", "1")) > 1 else {})}


def default_output_dir(model_name_or_path: str) -> str:
    """out/arena-minilm for the default backbone, else out/arena-<last part of the model name>."""
    if model_name_or_path == DEFAULT_MODEL:
        return "out/arena-minilm"
    name = Path(model_name_or_path.removeprefix("embedded:").rstrip("/")).name or "model"
    return f"out/arena-{name}"


def parse_args(argv: list[str] | None = None) -> tuple[ModelArguments, DataArguments, Any]:
    """(ModelArguments, DataArguments, TrainingArguments) from command-line options or one YAML/JSON file."""
    import yaml
    from transformers.hf_argparser import string_to_bool

    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if len(argv) == 1 and argv[0].lower().endswith((".yaml", ".yml", ".json")):
        path = Path(argv[0])
        if not path.is_file():
            raise UserError(f"{path}: no such config file")
        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8"))  # YAML is a superset of JSON
        except yaml.YAMLError as err:
            raise UserError(f"{path}: not valid YAML/JSON ({' '.join(str(err).split())})") from err
        if not isinstance(values, dict):
            raise UserError(f"{path}: expected a mapping of option names to values, got {type(values).__name__}")
        model_name = values.get("model_name_or_path", DEFAULT_MODEL)
        frozen = values.get("freeze_encoder")
        frozen = True if frozen is None else string_to_bool(frozen) if isinstance(frozen, str) else bool(frozen)
        defaults = {**recipe_defaults(frozen), **launch_defaults(), "output_dir": default_output_dir(str(model_name)),
                    "freeze_encoder": frozen}
        try:
            model_args, data_args, training_args = parser.parse_dict({**defaults, **values})
        except ValueError as err:
            raise UserError(f"{path}: {err}") from err
        chosen = {key for key in DO_FLAGS if key in values}
        do_eval_given = values.get("do_eval")
    else:
        peek = argparse.ArgumentParser(add_help=False)
        peek.add_argument("--model_name_or_path", default=DEFAULT_MODEL)
        peek.add_argument("--do_eval", type=string_to_bool, nargs="?", const=True, default=None)
        peek.add_argument("--freeze_encoder", type=string_to_bool, nargs="?", const=True, default=True)
        peeked = peek.parse_known_args(argv)[0]
        model_name, do_eval_given = peeked.model_name_or_path, peeked.do_eval
        parser.set_defaults(**recipe_defaults(peeked.freeze_encoder), **launch_defaults(),
                            output_dir=default_output_dir(model_name), freeze_encoder=peeked.freeze_encoder)
        try:
            model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=argv)
        except ValueError as err:  # unknown options, or TrainingArguments rejecting a combination
            parser.error(" ".join(str(err).split()))
        chosen = {key for key in DO_FLAGS for arg in argv if arg.split("=")[0] == f"--{key}"}
    _fill_in_defaults(data_args, training_args, chosen)
    if do_eval_given is False:  # TrainingArguments turned do_eval on from eval_strategy; the user said no
        training_args.do_eval = False
    return model_args, data_args, training_args


DO_FLAGS = ("do_train", "do_eval", "do_predict")
# What Trainer's batches are made of: the columns ArenaCollator reads, and `length` for length grouping.
MODEL_COLUMNS = ("input_ids_a", "input_ids_b", "pooled_a", "pooled_b", "style_a", "style_b", "label", "labels",
                 "length")


def model_columns(dataset: Any) -> Any:
    """The dataset with only its MODEL_COLUMNS: Trainer runs with remove_unused_columns off (recipe_defaults)."""
    return dataset.select_columns([c for c in MODEL_COLUMNS if c in dataset.column_names])


def recipe_defaults(freeze_encoder: bool) -> dict[str, Any]:
    """TrainingArguments defaults of the recipe: the frozen-encoder head recipe, or the seed's fine-tuning one.

    remove_unused_columns is off because `tokenize` already keeps only MODEL_COLUMNS: Trainer's own removal would
    also drop `length`, which its length grouping (--train_sampling_strategy group_by_length) reads; without it
    Trainer looks for an `input_ids` column, which a two-tower battle does not have."""
    return {**SEED_DEFAULTS, **(FROZEN_DEFAULTS if freeze_encoder else {}), "remove_unused_columns": False}


def _fill_in_defaults(data_args: DataArguments, training_args: Any, chosen: set[str]) -> None:
    """The example battles when no data is named; do_train/do_eval/do_predict from the data when none is chosen.

    TrainingArguments itself turns do_eval on whenever eval_strategy is not "no" (the seed's is "steps"), so the
    parsed values cannot tell what the user chose: `chosen` holds the do_* options actually given. With some
    given, evaluation also runs when training with an evaluation strategy and something to evaluate on.
    """
    named = (data_args.train_file, data_args.validation_file, data_args.test_file, data_args.dataset_name)
    if not any(named):
        data_args.train_file = str(EXAMPLES / "train.jsonl")
        data_args.validation_file = str(EXAMPLES / "validation.jsonl")
        data_args.test_file = str(EXAMPLES / "test.csv")
    has_train = bool(data_args.train_file or data_args.dataset_name)
    has_eval = bool(data_args.validation_file or has_train and data_args.validation_split_percentage)
    if not chosen:
        training_args.do_train = has_train
        training_args.do_eval = has_eval
        training_args.do_predict = bool(data_args.test_file)
    else:
        training_args.do_eval = "do_eval" in chosen or (
            training_args.do_train and training_args.eval_strategy != "no" and has_eval)
    if not 0 <= data_args.validation_split_percentage < 100:
        raise UserError(f"--validation_split_percentage {data_args.validation_split_percentage}: expected 0 to <100")


# ------------------------------------------------------------------------------------------------------- model
def load_model_and_tokenizer(model_args: ModelArguments) -> tuple[Any, Any]:
    """(ArenaModel, tokenizer): a fresh model around the named encoder, or a trained arena model as it is."""
    from backbones import load_model

    options = {k: getattr(model_args, k) for k in ("head", "rank_loss", "pooling", "truncation", "style_features")}
    options = {k: v for k, v in options.items() if v is not None}
    try:
        model, tokenizer = load_model(model_args.model_name_or_path, **options)
    except OSError as err:  # transformers' "not a local folder and not a valid model identifier" and kin
        raise UserError(f"--model_name_or_path {model_args.model_name_or_path}: {err}") from err
    limit = position_limit(model.config.encoder_config)
    trained = _is_trained(model_args.model_name_or_path, model)
    if model_args.max_length is not None:
        if limit is not None and model_args.max_length > limit:
            raise UserError(f"--max_length {model_args.max_length}: this {model.config.encoder_config.model_type} "
                            f"encoder reads at most {limit} tokens per tower")
        model.config.max_length = model_args.max_length
    elif not trained:
        model.config.max_length = min(SEED_MAX_LENGTH, limit or SEED_MAX_LENGTH)
    tokenizer.model_max_length = model.config.max_length
    if model_args.freeze_encoder:
        for param in model.encoder.parameters():
            param.requires_grad = False
    return model, tokenizer


def position_limit(encoder_config: Any) -> int | None:
    """Tokens an encoder can read: its position table for absolute positions (BERT), None for relative-only
    (DeBERTa-v3 with position_biased_input=False reads any length)."""
    if getattr(encoder_config, "position_biased_input", True):
        return getattr(encoder_config, "max_position_embeddings", None)
    return None


def _is_trained(model_name_or_path: str, model: Any) -> bool:
    """Whether the model is a saved arena model (not an encoder with a fresh head)."""
    # load_model returns a saved ArenaModel through from_pretrained, which records where it came from.
    return not model_name_or_path.startswith("embedded:") and bool(getattr(model.config, "_name_or_path", ""))


# -------------------------------------------------------------------------------------------------------- data
def load_splits(data_args: DataArguments, training_args: Any) -> dict[str, Any]:
    """The raw splits this run needs: {"train", "validation", "test"} (datasets.Dataset each, in the arena
    schema), with the validation split carved out of train by prompt when no validation set is given."""
    from arena_dataset import InvalidBattleError, load_arena, split_by_prompt

    def load(file: str | None, split: str, needed: bool):
        source = file or data_args.dataset_name
        if source is None:
            return None
        try:
            return load_arena(source, split=split, skip_invalid=data_args.skip_invalid)
        except InvalidBattleError:
            raise
        except ValueError as err:  # a dataset without this split: fine unless the split itself was asked for
            if file is not None or needed:
                raise
            logger.info("%s has no %s split (%s)", source, split, err)
            return None

    splits: dict[str, Any] = {}
    if training_args.do_train or (training_args.do_eval and not data_args.validation_file):
        splits["train"] = load(data_args.train_file, "train", needed=training_args.do_train)
    if training_args.do_eval:
        splits["validation"] = load(data_args.validation_file, "validation", needed=False)
        if splits["validation"] is None and splits.get("train") is not None and data_args.validation_split_percentage:
            held_out = split_by_prompt(splits["train"], data_args.validation_split_percentage / 100,
                                       seed=training_args.seed)
            splits["train"], splits["validation"] = held_out["train"], held_out["validation"]
            logger.info("held out %d of %d training battles for evaluation (split by prompt)",
                        len(held_out["validation"]), len(held_out["train"]) + len(held_out["validation"]))
        if splits["validation"] is None:
            raise UserError("--do_eval needs battles to evaluate: give --validation_file, a --dataset_name with a "
                            "validation split, or a --train_file with --validation_split_percentage > 0")
    if training_args.do_train and splits.get("train") is None:
        raise UserError("--do_train needs battles: give --train_file or --dataset_name")
    if training_args.do_predict:
        splits["test"] = load(data_args.test_file, "test", needed=True)
        if splits["test"] is None:
            raise UserError("--do_predict needs battles: give --test_file (or a --dataset_name with a test split)")
    for name in ("train", "validation"):
        if splits.get(name) is not None and "label" not in splits[name].column_names:
            raise UserError(f"the {name} battles have no labels (winner / winner_model_a.. columns); "
                            "training and evaluation need them")
    return {k: v for k, v in splits.items() if v is not None}


def tokenize(splits: dict[str, Any], tokenizer: Any, model: Any, data_args: DataArguments,
             training_args: Any, freeze_encoder: bool) -> dict[str, Any]:
    """Tower inputs for train/validation through arena_dataset.tokenize_arena (encoding_arena underneath, the
    same path the pipeline takes at prediction time); with a frozen encoder, its pooled towers in place of the
    token ids (pooled_towers.embed_towers: one encoder pass, cached, instead of one per epoch), computed on the
    device this process trains on."""
    from datasets import concatenate_datasets

    from arena_dataset import swap_battles, tokenize_arena
    from pooled_towers import embed_towers

    out = {}
    for name in ("train", "validation"):
        if name in splits:
            out[name] = tokenize_arena(splits[name], tokenizer, model.config.max_length, model.config.truncation)
            if freeze_encoder:
                model.to(training_args.device)  # Trainer would move it there next; the pass runs there too
                out[name] = embed_towers(out[name], model, batch_size=training_args.per_device_eval_batch_size)
    if data_args.swap_augment and "train" in out:
        out["train"] = concatenate_datasets([out["train"], swap_battles(out["train"])])
    return {name: model_columns(split) for name, split in out.items()}


# ------------------------------------------------------------------------------------------------------ metrics
def build_compute_metrics():
    """compute_metrics for Trainer: softmax of the logits, scored by the repo's evaluate metric (log loss first)."""
    import evaluate
    import numpy as np

    # keep_in_memory: no cache files, so several processes (torchrun) never share a lock.
    metric = evaluate.load(str(METRIC_PATH), keep_in_memory=True)

    def compute_metrics(eval_pred) -> dict[str, float]:
        logits = eval_pred.predictions
        logits = logits[0] if isinstance(logits, (tuple, list)) else logits  # rank head: (logits, rewards)
        logits = np.asarray(logits, dtype=np.float64)
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        return metric.compute(predictions=probs, references=np.asarray(eval_pred.label_ids))

    return compute_metrics


def probabilities(prediction_output) -> Any:
    """(N, 3) probabilities from a Trainer PredictionOutput."""
    import numpy as np

    logits = prediction_output.predictions
    logits = np.asarray(logits[0] if isinstance(logits, (tuple, list)) else logits, dtype=np.float64)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    return probs / probs.sum(axis=1, keepdims=True)


def calibrate(trainer: Any, output: Any, metrics: dict[str, float]) -> Any:
    """Fit the temperature on the evaluation predictions, store it in the model's config, record it and the
    calibrated log loss in `metrics`; returns the calibrated (N, 3) probabilities."""
    import numpy as np
    import torch

    from calibration import fit_temperature

    logits = output.predictions[0] if isinstance(output.predictions, (tuple, list)) else output.predictions
    logits, labels = torch.as_tensor(np.asarray(logits), dtype=torch.float64), torch.as_tensor(output.label_ids)
    factor = fit_temperature(logits, labels)
    config = trainer.accelerator.unwrap_model(trainer.model).config
    config.temperature = float(config.temperature * factor)
    calibrated = (logits / factor).softmax(-1)
    metrics["eval_log_loss_calibrated"] = float(torch.nn.functional.nll_loss(calibrated.log(), labels.long()))
    metrics["temperature"] = config.temperature
    logger.info("calibration: temperature %.3f; eval log loss %.4f -> %.4f (fitted on these battles)",
                config.temperature, metrics["eval_log_loss"], metrics["eval_log_loss_calibrated"])
    return calibrated.numpy()


# ------------------------------------------------------------------------------------------------ saving, output
def save_repo(model: Any, tokenizer: Any, output_dir: str | Path) -> None:
    """Write the model as a complete Hub repo into `output_dir` (weights, tokenizer, remote-code modules,
    `custom_pipelines`), without ever leaving a loadable half-written model.

    Everything is written to a temporary folder next to the target first; then config.json (what makes a folder
    loadable) is removed, the new files are moved in one by one with os.replace (atomic per file), and the new
    config.json goes in last. A reader sees the old model, no model, or the new one; never a mix.
    """
    from pipeline_arena import ArenaPreferencePipeline

    target = Path(output_dir)
    target.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.saving-", dir=target.parent))
    try:
        ArenaPreferencePipeline(model=model, tokenizer=tokenizer).save_pretrained(str(staging))
        (target / "config.json").unlink(missing_ok=True)
        files = sorted(p for p in staging.rglob("*") if p.is_file())
        for path in sorted(files, key=lambda p: p.name == "config.json"):
            destination = target / path.relative_to(staging)
            destination.parent.mkdir(parents=True, exist_ok=True)
            _usual_permissions(path)
            os.replace(path, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _usual_permissions(path: str | Path) -> None:
    # temp files are created 0600; a published repo's files should be readable like any other file.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def write_atomically(path: Path, write) -> None:
    """Call `write(temp_path)`, then move the finished file onto `path` (readers never see half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(Path(temp))
        _usual_permissions(temp)
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


def predict(model: Any, tokenizer: Any, test: Any, output_dir: str | Path, batch_size: int, swap_tta: bool) -> Path:
    """Score every test battle with the arena-preference pipeline and write predictions.csv (Kaggle format:
    id,winner_model_a,winner_model_b,winner_tie; one row per input row, in input order)."""
    from tqdm.auto import tqdm

    from configuration_arena import LABELS
    from pipeline_arena import ArenaPreferencePipeline

    judge = ArenaPreferencePipeline(model=model, tokenizer=tokenizer)
    battles = ({key: row[key] for key in ("prompt", "response_a", "response_b")} for row in test)
    results = judge(battles, batch_size=batch_size, swap_tta=swap_tta)  # a generator in, a stream out
    path = Path(output_dir) / "predictions.csv"

    def write(temp: Path) -> None:
        with open(temp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", *LABELS])
            for battle_id, result in tqdm(zip(test["id"], results), total=len(test), desc="Predicting"):
                writer.writerow([battle_id, *(f"{result[label]:.6f}" for label in LABELS)])

    write_atomically(path, write)
    return path


def resolve_resume(training_args: Any) -> str | bool | None:
    """--resume_from_checkpoint PATH as given; "latest" (or "true") means the newest complete checkpoint in
    output_dir. Incomplete checkpoints (see `checkpoint_problem`) are skipped with a warning, or refused by path."""
    from transformers.trainer_utils import sort_checkpoints

    value = training_args.resume_from_checkpoint
    if value is None or str(value).lower() in ("", "none", "false"):
        return None
    if str(value).lower() in ("latest", "last", "true"):
        output_dir = training_args.output_dir
        found = sort_checkpoints(output_dir) if os.path.isdir(output_dir) else []
        if not found:
            raise UserError(f"--resume_from_checkpoint {value}: no checkpoint-* folder in {output_dir}")
        for checkpoint in reversed(found):  # newest first
            problem = checkpoint_problem(checkpoint)
            if problem is None:
                return checkpoint
            logger.warning("not resuming from %s: %s", checkpoint, problem)
        raise UserError(f"--resume_from_checkpoint {value}: no complete checkpoint in {output_dir} "
                        f"({len(found)} incomplete)")
    if not os.path.isdir(value):
        raise UserError(f"--resume_from_checkpoint {value}: no such checkpoint folder")
    problem = checkpoint_problem(value)
    if problem is not None:
        raise UserError(f"--resume_from_checkpoint {value}: incomplete checkpoint: {problem}")
    return value


def checkpoint_problem(folder: str | Path) -> str | None:
    """Why a checkpoint folder cannot be resumed from, or None when it is complete.

    Trainer writes a checkpoint's files in place, trainer_state.json last, so a run killed while saving leaves a
    folder without it (or with it cut short); a weights file cut short later (a full disk, a partial copy) fails
    safetensors' header check, which covers the whole file. Trainer itself would resume from such a folder.
    """
    from safetensors import SafetensorError, safe_open

    folder = Path(folder)
    try:
        json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "no trainer_state.json (the run stopped while saving it)"
    except (OSError, ValueError) as err:
        return f"unreadable trainer_state.json ({err})"
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        return "no *.safetensors weights"
    for path in weights:
        try:
            with safe_open(str(path), framework="pt"):
                pass
        except SafetensorError as err:
            return f"{path.name} is cut short ({err})"
    return None


# Seconds to wait for any answer of the Hub while pushing. huggingface_hub 2.4's shared HTTP client has no timeout
# (timeout=None), so a Hub that stops answering would hang the push forever; with one, a stalled request fails and
# is retried by the library like a 5xx. Set with HF_HUB_DOWNLOAD_TIMEOUT (the library's own "seconds to wait for
# the server" variable; it does not otherwise apply to uploads).
PUSH_TIMEOUT_S = 60.0


def push(output_dir: str | Path, training_args: Any) -> str:
    """Upload the output folder (checkpoints left out) to the Hub; returns the repo id. The token comes from
    --hub_token, HF_TOKEN or the stored login, as huggingface_hub finds it; it is never printed.

    huggingface_hub retries each request on 5xx answers and timeouts (5 retries, 1-8 s apart); when it gives up,
    a UserError says so, that the local output is complete, and how to push it again without training.
    """
    import httpx2  # huggingface_hub 2's HTTP client; HfHubHTTPError and timeouts are its HTTPError
    from huggingface_hub import create_repo, get_session, upload_folder

    get_session().timeout = float(os.environ.get("HF_HUB_DOWNLOAD_TIMEOUT") or PUSH_TIMEOUT_S)
    repo_id = training_args.hub_model_id or Path(output_dir).resolve().name
    token = training_args.hub_token
    try:
        repo_id = create_repo(repo_id, token=token, private=training_args.hub_private_repo, exist_ok=True).repo_id
        upload_folder(
            repo_id=repo_id, folder_path=str(output_dir), token=token, revision=training_args.hub_revision,
            commit_message="Upload arena preference model (train.py)",
            ignore_patterns=["checkpoint-*", "checkpoint-*/**", "runs/**", ".*", ".*/**"],
        )
    except (httpx2.HTTPError, OSError) as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        raise UserError(f"--push_to_hub {repo_id}: the upload failed after huggingface_hub's retries "
                        f"({type(err).__name__}: {reason}); {output_dir} is complete and unchanged. Push it again "
                        f"without training: python train.py --model_name_or_path {output_dir} --output_dir "
                        f"{output_dir} --do_train false --push_to_hub --hub_model_id {repo_id}") from err
    return repo_id


# ---------------------------------------------------------------------------------------------------------- run
def run(model_args: ModelArguments, data_args: DataArguments, training_args: Any) -> dict[str, Any]:
    """Train / evaluate / predict / publish as asked; returns {"trainer", "metrics", "output_dir", ...}."""
    import datasets
    import torch
    import transformers
    from transformers import Trainer, set_seed

    import training_report
    from encoding_arena import ArenaCollator

    is_main = training_args.process_index == 0
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        level=logging.INFO if is_main else logging.WARNING, force=True)
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    datasets.utils.logging.set_verbosity(training_args.get_process_log_level())
    set_seed(training_args.seed)
    resume = resolve_resume(training_args) if training_args.do_train else None
    # train.py pushes once, at the end, the whole repo; Trainer's own pushes (every save) stay off.
    wants_push, training_args.push_to_hub = training_args.push_to_hub, False
    output_dir = Path(training_args.output_dir)
    if training_args.dataloader_pin_memory and not torch.cuda.is_available():
        training_args.dataloader_pin_memory = False  # pinning needs an accelerator; on CPU it only warns

    with training_args.main_process_first(desc="loading the model and the battles"):
        splits = load_splits(data_args, training_args)  # first: a bad file fails before a model is loaded
        model, tokenizer = load_model_and_tokenizer(model_args)
        tokenized = tokenize(splits, tokenizer, model, data_args, training_args, model_args.freeze_encoder)
        compute_metrics = build_compute_metrics()
    logger.info("model %s: head=%s, max_length=%d, %s parameters (%s trainable%s)", model_args.model_name_or_path,
                model.config.head, model.config.max_length, f"{model.num_parameters():,}",
                f"{model.num_parameters(only_trainable=True):,}",
                ": the head, on pooled towers of the frozen encoder" if model_args.freeze_encoder else "")
    scores_only = not training_args.do_train and (training_args.do_eval or training_args.do_predict)
    if scores_only and not _is_trained(model_args.model_name_or_path, model):
        logger.warning("%s is an encoder, not a trained arena model: its head is freshly initialised, so these "
                       "evaluations and predictions are those of an untrained model (add --do_train, or point "
                       "--model_name_or_path at a trained output folder)", model_args.model_name_or_path)
    if training_args.eval_strategy != "no" and "validation" not in tokenized:
        training_args.eval_strategy = "no"  # nothing to evaluate on during training

    trainer = Trainer(
        model=model, args=training_args, train_dataset=tokenized.get("train"),
        eval_dataset=tokenized.get("validation"), processing_class=tokenizer,
        data_collator=ArenaCollator(pad_token_id=tokenizer.pad_token_id or 0), compute_metrics=compute_metrics,
    )
    metrics: dict[str, float] = {}
    result: dict[str, Any] = {"trainer": trainer, "output_dir": output_dir, "metrics": metrics}

    if training_args.do_train:
        logger.info("training on %d battles, evaluating on %s", len(tokenized["train"]),
                    len(tokenized["validation"]) if "validation" in tokenized else "none")
        train_output = trainer.train(resume_from_checkpoint=resume)
        train_metrics = {**train_output.metrics, "train_samples": len(tokenized["train"])}
        trainer.log_metrics("train", train_metrics)
        trainer.save_metrics("train", train_metrics)
        trainer.save_state()
        metrics.update(train_metrics)
        if trainer.is_world_process_zero():
            save_repo(trainer.model, tokenizer, output_dir)
            logger.info("saved the model repo to %s", output_dir)

    eval_probs = eval_labels = None
    if training_args.do_eval:
        output = trainer.predict(tokenized["validation"], metric_key_prefix="eval")
        eval_metrics = {**output.metrics, "eval_samples": len(tokenized["validation"])}
        eval_probs, eval_labels = probabilities(output), output.label_ids
        if model_args.calibrate and training_args.do_train:
            eval_probs = calibrate(trainer, output, eval_metrics)
            if trainer.is_world_process_zero():
                save_repo(trainer.model, tokenizer, output_dir)
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)
        metrics.update(eval_metrics)

    if trainer.is_world_process_zero():
        if training_args.do_eval:
            training_report.plot_confusion_and_calibration(eval_probs, eval_labels, output_dir)
        if training_args.do_train:
            training_report.plot_training_curve(trainer.state.log_history, output_dir / "training_curve.png")
            card = training_report.model_card(model_args, data_args, training_args, trainer.model.config, metrics)
            write_atomically(output_dir / "README.md", lambda temp: card.save(temp))
        if training_args.do_predict:
            # Under --bf16/--fp16 accelerate wraps forward in autocast; the pipeline gets the plain model and
            # predicts in the model's own precision.
            plain = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
            path = predict(plain, tokenizer, splits["test"], output_dir,
                           training_args.per_device_eval_batch_size, data_args.swap_tta)
            logger.info("wrote %d predictions to %s", len(splits["test"]), path)
            result["predictions"] = path
        if wants_push:
            if not training_args.do_train and not (output_dir / "config.json").is_file():
                raise UserError(f"--push_to_hub: {output_dir} holds no model (train one, or point --output_dir at one)")
            result["repo_id"] = push(output_dir, training_args)
            logger.info("pushed %s to the Hub as %s", output_dir, result["repo_id"])
    return result


USER_ERRORS = (UserError, ValueError, FileNotFoundError, ImportError, OSError)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Entry point: parse, run, and turn user errors into one line on stderr (exit status 1)."""
    debug = os.environ.get("ARENA_DEBUG", "") not in ("", "0")
    try:
        return run(*parse_args(argv))
    except USER_ERRORS as err:
        if debug:
            raise
        reason = " ".join(str(err).split()) or type(err).__name__
        print(f"train.py: error: {reason} (ARENA_DEBUG=1 shows the traceback)", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
