"""train.py's options: what to train (`ModelArguments`), on which battles (`DataArguments`), and how
(`ArenaTrainingArguments`, a `TrainingArguments` whose defaults are the default recipe's); `parse_args` reads them
from the command line or from one YAML/JSON file of the same keys.

The default recipe keeps the encoder frozen and trains the head on pooled towers computed once (pooled_towers.py);
its optimizer values were chosen by cross-validation on real votes (bench/head_sweep.py). Fine-tuning the whole
encoder is a config file: `python train.py examples/finetune.yaml`.
"""

from __future__ import annotations

import os
import sys
import textwrap
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser, TrainingArguments
from transformers.hf_argparser import string_to_bool

from arena_preference.run_folder import UserError, command_key
from precision_arena import PRECISIONS

# The example battles of the main job live in the clone (examples/ beside this package); an installed package has
# none, and then data must be named.
ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DEFAULT_MODEL = "embedded:minilm-l6"
DO_FLAGS = ("do_train", "do_eval", "do_predict")


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
        metadata={"help": "classify (3-way softmax) or rank (a reward per response, Davidson ties); a fresh model "
                          "defaults to classify, a trained one keeps its own.", "choices": ["classify", "rank"]},
    )
    rank_loss: str | None = field(
        default=None,
        metadata={"help": "With --head rank: davidson (default; Bradley-Terry with ties) or mse (the seed's "
                          "regression).", "choices": ["davidson", "mse"]},
    )
    pooling: str | None = field(default=None, metadata={"help": "mean (default), cls, or last (the last non-padding "
                                                               "token; the default for decoder LLMs).",
                                                       "choices": ["mean", "cls", "last"]})
    max_length: int | None = field(
        default=None,
        metadata={"help": "Token budget per tower. A fresh model: 1024, capped at what the encoder can read (512 for "
                          "MiniLM/BERT); a trained model keeps its own."},
    )
    truncation: str | None = field(
        default=None,
        metadata={"help": "latest_turns (default: keep the last exchange and as many earlier turns as fit) or "
                          "head (cut the conversation at the end).", "choices": ["latest_turns", "head"]},
    )
    style_features: bool | None = field(
        default=None,
        metadata={"help": "Feed response style features (length, markdown) to the head (fresh model default: true)."},
    )
    freeze_encoder: bool = field(
        default=True,
        metadata={"help": "true (default): keep the encoder as loaded, pool every battle's towers once and train the "
                          "head on them. false: fine-tune the whole encoder (see examples/finetune.yaml for that "
                          "recipe's values; for a GPU and tens of thousands of battles)."},
    )
    precision: str = field(
        default="auto",
        metadata={"help": "Encoder arithmetic for the frozen recipe's pooling pass and --do_predict: auto (bf16 on "
                          "CPUs with AMX/AVX512-BF16 and on GPUs; elsewhere fp32, run by ONNX Runtime: onnx-fp32), "
                          "fp32 (PyTorch), onnx-fp32, bf16, fp16, int8 (CPU).",
                  "choices": list(PRECISIONS)},
    )
    space_dir: str | None = field(
        default=None,
        metadata={"help": "Also write a Hugging Face Space (a Gradio demo of the trained model, app.py) into this "
                          "folder; needs the demo extra. Publish it with upload_folder(..., repo_type='space')."},
    )
    calibrate: bool = field(
        default=False,
        metadata={"help": "After training, fit a temperature on the validation battles, store it in config.json and "
                          "use it for predictions (eval_log_loss_calibrated is fitted on those same battles)."},
    )
    # Decoder LLMs and the cross-encoder (docs/llm.md).
    cross_encoder: bool = field(
        default=False,
        metadata={"help": "A joint cross-encoder instead of the dual tower: one sequence per battle (prompt, answer "
                          "A, answer B), read in both orders and the probabilities averaged (symmetric in A/B)."},
    )
    lora_r: int | None = field(
        default=None,
        metadata={"help": "Fine-tune the encoder through LoRA adapters of this rank (needs peft: pip install "
                          "'arena-preference[llm]'); implies --freeze_encoder false. The saved model holds merged "
                          "weights and loads without peft."},
    )
    lora_alpha: float | None = field(default=None, metadata={"help": "LoRA scaling numerator (default: 2 x lora_r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA adapters' input."})
    lora_target_modules: str | None = field(
        default=None,
        metadata={"help": "Comma-separated module names to adapt, or all-linear. Default: attention and MLP "
                          "projections for Llama/Qwen2/Gemma/Mistral shapes (q,k,v,o,gate,up,down_proj), all-linear "
                          "for architectures without a default."},
    )
    relevance: bool | None = field(
        default=None,
        metadata={"help": "Content terms from the prompt and each answer encoded on their own (their cosine, also "
                          "of the last turns; empty / cut-off / repeating answers), in the content view "
                          "(--style_control) as well (fresh model default: true; docs/quality.md)."},
    )
    content_pairs_weight: float | None = field(
        default=None,
        metadata={"help": "Weight of the label-free content pairs beside the votes (an answer beats an answer to "
                          "another prompt of the batch, and its own empty, cut-off and repeated versions; "
                          "docs/quality.md). They fit the content view's own relevance weight only. 0 turns them off. Fresh "
                          "model with --relevance default: 10."},
    )


@dataclass
class DataArguments:
    """Where the battles come from: any layout arena_dataset.load_arena reads (Kaggle CSV, Hub conversations, plain
    columns; CSV, JSON, JSONL, parquet). With no data named, the example battles in examples/ are used."""

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
    style_control: bool = field(
        default=False,
        metadata={"help": "With --do_predict: add style_controlled_winner_model_a/_b/_tie columns, the probabilities "
                          "with the style terms removed (what the model thinks of the content alone)."},
    )
    skip_invalid: bool = field(
        default=False, metadata={"help": "Skip (and count) rows that do not fit the schema instead of stopping."}
    )
    # Distillation (arena_preference/distillation.py).
    teacher_file: str | None = field(
        default=None,
        metadata={"help": "Another model's predictions.csv (the --do_predict layout), joined to the training battles "
                          "by id: soft targets to learn from. Training battles without labels learn from it alone."},
    )
    distill_weight: float = field(
        default=0.5,
        metadata={"help": "With --teacher_file: target = (1 - w) x vote + w x teacher probabilities (0: votes only, "
                          "1: the teacher only)."},
    )


@dataclass(repr=False)  # keep TrainingArguments' __repr__, which hides the hub token
class ArenaTrainingArguments(TrainingArguments):
    r"""`TrainingArguments` for the arena recipe. Every `TrainingArguments` option works as documented there.

    Parameters whose default values differ from TrainingArguments:

    > The frozen-encoder recipe: a linear head on pooled towers computed once, so an epoch costs seconds. Adagrad's
    > weight decay is an L2 penalty in the gradient, which held the 2 x 384 embedding weights back better than
    > AdamW's decoupled decay on a few thousand votes (bench/head_sweep.py).

        optim (defaults to `"adagrad"`), learning_rate (defaults to 0.1), weight_decay (defaults to 0.02),
        num_train_epochs (defaults to 10), per_device_train_batch_size (defaults to 32).

    > Evaluation and checkpoints as the seed recipe had them; log loss picks the best model.

        per_device_eval_batch_size (defaults to 8), eval_strategy (defaults to `"steps"`), eval_steps (defaults to
        2000), save_steps (defaults to 2000), save_total_limit (defaults to 2), metric_for_best_model (defaults to
        `"log_loss"`), greater_is_better (defaults to False), logging_steps (defaults to 10), logging_first_step
        (defaults to True).

    > remove_unused_columns (defaults to False): the tokenized battles keep only the model's columns already, plus
    > `length`, which Trainer's length grouping reads and its own column removal would drop.

    > On a machine without CUDA or MPS: use_cpu (defaults to True), which accelerate needs to set up multi-process
    > CPU training (without it each torchrun process would silently train alone) and which lets --bf16 run on CPU;
    > under torchrun / accelerate launch there, ddp_backend (defaults to `"gloo"`).

    output_dir (defaults to `out/arena-minilm` for the default encoder, else `out/arena-<model name>`).
    """

    output_dir: str | None = field(
        default=None,
        metadata={"help": "Where the model repo, results, plots and checkpoints go [default: out/arena-minilm for "
                          "the default encoder, else out/arena-<model name>]."},
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Remove what output_dir holds before this run writes to it (a run owns its output folder: "
                          "without this, a folder holding another run's files is refused)."},
    )
    resume_from_checkpoint: str | None = field(
        default=None,
        metadata={"help": "A checkpoint folder to resume from, or `latest` for the newest complete one in output_dir."},
    )
    optim: str = field(default="adagrad", metadata={"help": "The optimizer."})
    learning_rate: float = field(default=0.1, metadata={"help": "The initial learning rate."})
    weight_decay: float = field(default=0.02, metadata={"help": "Weight decay."})
    num_train_epochs: float = field(default=10, metadata={"help": "Training epochs."})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "Training batch size."})
    per_device_eval_batch_size: int = field(default=8, metadata={"help": "Evaluation batch size."})
    eval_strategy: str = field(default="steps", metadata={"help": "When to evaluate."})
    eval_steps: float | None = field(default=2000, metadata={"help": "Evaluate every N steps."})
    save_steps: float = field(default=2000, metadata={"help": "Save a checkpoint every N steps."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Checkpoints kept."})
    metric_for_best_model: str | None = field(default="log_loss",
                                              metadata={"help": "The metric that picks the best checkpoint."})
    greater_is_better: bool | None = field(default=False,
                                           metadata={"help": "Whether a higher metric is better (log loss: no)."})
    logging_steps: float = field(default=10, metadata={"help": "Log every N steps."})
    logging_first_step: bool = field(default=True, metadata={"help": "Log the first step."})
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Off: the battles keep only the model's columns and `length` already."})

    def __post_init__(self) -> None:
        import torch

        if not (torch.cuda.is_available() or torch.backends.mps.is_available()):
            self.use_cpu = True
            if self.ddp_backend is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
                self.ddp_backend = "gloo"
        super().__post_init__()

    def __getstate__(self) -> dict[str, Any]:
        # Trainer pickles the arguments into every checkpoint (training_args.bin): the token must not go with them.
        # The live object keeps it for the push.
        state = dict(self.__dict__)
        state["hub_token"] = None
        return state


# What `--help` shows first: the options of a first run (the model options used to come before them),
# then the project's own options and the defaults the recipe changes.
FIRST_OPTIONS = ("train_file", "validation_file", "test_file", "dataset_name", "output_dir", "do_train", "do_eval",
                 "do_predict")
# TrainingArguments' own help for these speaks of Trainer ("Not directly used by Trainer", push_to_hub "every time
# the model is saved"); say what train.py does with them, in --help and --help-all alike.
OWN_HELP = {
    "do_train": "Train on --train_file / --dataset_name and save the model repo in --output_dir.",
    "do_eval": "Evaluate on --validation_file (or battles held out of the training file).",
    "do_predict": "Predict --test_file into output_dir/predictions.csv.",
    "push_to_hub": "Upload the output folder (checkpoints left out) to the Hub as --hub_model_id, once, at the end of "
                   "the run, after the model is saved locally.",
}
PROJECT_HELP_CLASSES = (ModelArguments, DataArguments)
CHANGED_DEFAULTS = [name for name in ArenaTrainingArguments.__annotations__
                    if name not in ("output_dir", "overwrite_output_dir", "resume_from_checkpoint")]


class ArenaArgumentParser(HfArgumentParser):
    """HfArgumentParser over the three dataclasses, with a `--help` a newcomer can read (the project's options and
    the recipe's changed defaults; `--help-all` lists every TrainingArguments option too) and bad options reported
    in one line (argparse would print the whole usage first, which for TrainingArguments is a page)."""

    def __init__(self) -> None:
        super().__init__((ModelArguments, DataArguments, ArenaTrainingArguments), prog="train.py",
                         description="Train, evaluate, predict and publish an arena preference model.")
        for action in self._actions:
            if action.dest in OWN_HELP:
                action.help = OWN_HELP[action.dest]

    def error(self, message: str) -> None:  # argparse API: must not return
        print(f"train.py: error: {message} (python train.py --help lists the options)", file=sys.stderr)
        sys.exit(2)

    def format_help(self) -> str:
        """One entry per option (no dash aliases or --no_* twins), the project's options first."""
        by_name = {action.dest: action for action in self._actions if f"--{action.dest}" in action.option_strings}
        # What a newcomer needs first (the data, where results go, what to do), then the rest by class.
        sections = [("Start here", "the battles, where the results go, and what to do with them (with none of "
                     "--do_train/--do_eval/--do_predict given, each runs when its data is there).", list(FIRST_OPTIONS))]
        sections += [(cls.__name__, cls.__doc__.split("\n\n")[0],
                      [f.name for f in fields(cls) if f.name not in FIRST_OPTIONS]) for cls in PROJECT_HELP_CLASSES]
        sections.append(("ArenaTrainingArguments",
                         "Every transformers TrainingArguments option works; these are the ones the recipe changes "
                         "or that you will want first.",
                         [name for name in ["output_dir", "overwrite_output_dir", *CHANGED_DEFAULTS, "seed", "bf16", "fp16", "resume_from_checkpoint",
                          "push_to_hub", "hub_model_id"] if name not in FIRST_OPTIONS]))
        lines = ["usage: python train.py [CONFIG.yaml | OPTIONS]", "", self.description, ""]
        for title, about, names in sections:
            lines += [f"{title}: " + " ".join(about.split()), ""]
            for name in names:
                action = by_name[name]
                value = "{" + ",".join(map(str, action.choices)) + "}" if action.choices else name.upper()
                default = "" if action.default is None or name in DO_FLAGS else f" [default: {action.default}]"
                lines.append(f"  --{name} {value}")
                lines += textwrap.wrap(" ".join((action.help or "").split()) + default, 108,
                                       initial_indent="      ", subsequent_indent="      ")
            lines.append("")
        lines.append("python train.py --help-all lists every option. python train.py examples/finetune.yaml fine-tunes "
                     "the whole encoder instead of the frozen-encoder recipe.")
        return "\n".join(lines) + "\n"

    def format_full_help(self) -> str:
        return super().format_help()


def default_output_dir(model_name_or_path: str) -> str:
    """out/arena-minilm for the default encoder, else out/arena-<last part of the model name>."""
    if model_name_or_path == DEFAULT_MODEL:
        return "out/arena-minilm"
    name = Path(model_name_or_path.removeprefix("embedded:").rstrip("/")).name or "model"
    return f"out/arena-{name}"


def parse_args(argv: list[str] | None = None) -> tuple[ModelArguments, DataArguments, ArenaTrainingArguments]:
    """(ModelArguments, DataArguments, ArenaTrainingArguments) from command-line options or one YAML/JSON file."""
    parser = ArenaArgumentParser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--help-all" in argv:
        print(parser.format_full_help())
        sys.exit(0)
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
        try:
            model_args, data_args, training_args = parser.parse_dict(values)
        except (ValueError, TypeError) as err:
            raise UserError(f"{path}: {err}") from err
        given = {key: value for key, value in values.items()}
    else:
        try:
            model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=argv)
        except ValueError as err:  # unknown options, or TrainingArguments rejecting a combination
            parser.error(" ".join(str(err).split()))
        given = _given_options(argv)
    resolve_llm_options(model_args, given)
    if "output_dir" not in given:
        training_args.output_dir = default_output_dir(model_args.model_name_or_path)
    # For the run-folder rule (run_folder.claim_output_dir): the same command run again into the default folder
    # may replace its own finished run there. Private attributes: not options, not in --help or the model card.
    training_args._arena_command = command_key(given)
    training_args._arena_output_dir_given = "output_dir" in given
    chosen = {key: string_to_bool(given[key]) if isinstance(given[key], str) else bool(given[key])
              for key in DO_FLAGS if key in given}
    fill_in_data_defaults(data_args, training_args, chosen)
    check_something_to_do(model_args, training_args, chosen)
    return model_args, data_args, training_args


def check_something_to_do(model_args: ModelArguments, training_args: TrainingArguments,
                          chosen: dict[str, bool]) -> None:
    """A run that would neither train, evaluate, predict, push nor write a Space is a mistake (e.g. `--train_file
    x.csv --do_eval false`: with one of the do_* options given, the others are off); say so instead of exiting 0."""
    if (training_args.do_train or training_args.do_eval or training_args.do_predict or training_args.push_to_hub
            or model_args.space_dir):
        return
    given = " ".join(f"--{key} {str(value).lower()}" for key, value in chosen.items())
    raise UserError(f"nothing to do: {given or 'no data'} leaves --do_train, --do_eval and --do_predict all off "
                    "(once one of them is given, the others are off unless given too); add --do_train (or "
                    "--do_eval / --do_predict) for what this run should do")


def resolve_llm_options(model_args: ModelArguments, given: dict[str, Any]) -> None:
    """--lora_r trains the encoder (through its adapters), so it implies --freeze_encoder false; saying both
    --freeze_encoder true and --lora_r is a contradiction, refused."""
    if model_args.lora_r is None:
        return
    if isinstance(model_args.lora_r, bool) or model_args.lora_r < 1:
        raise UserError(f"--lora_r {model_args.lora_r}: expected a positive int (the adapters' rank, e.g. 8 or 16)")
    if "freeze_encoder" in given and model_args.freeze_encoder:
        raise UserError("--lora_r trains LoRA adapters in the encoder; --freeze_encoder true keeps the encoder as "
                        "loaded: drop one of them")
    model_args.freeze_encoder = False


def _given_options(argv: list[str]) -> dict[str, Any]:
    """{option name: its value as typed (True for a bare flag)} of the options on a command line."""
    given: dict[str, Any] = {}
    for i, arg in enumerate(argv):
        if arg.startswith("--"):
            name, _, value = arg[2:].partition("=")
            follows = argv[i + 1] if i + 1 < len(argv) and not argv[i + 1].startswith("--") else True
            given[name] = value if "=" in arg else follows
    return given


def fill_in_data_defaults(data_args: DataArguments, training_args: TrainingArguments,
                          chosen: dict[str, bool]) -> None:
    """The example battles when no data is named; do_train/do_eval/do_predict from the data when none is chosen.

    TrainingArguments itself turns do_eval on whenever eval_strategy is not "no", so the parsed values cannot tell
    what the user chose: `chosen` holds the do_* options actually given, with their values. With some given, evaluation also runs when
    training with an evaluation strategy and something to evaluate on.
    """
    named = (data_args.train_file, data_args.validation_file, data_args.test_file, data_args.dataset_name)
    if not any(named):
        if not (EXAMPLES / "train.jsonl").is_file():
            raise UserError("no data named and no example battles here (they ship with a clone, in examples/): "
                            "pass --train_file (and --validation_file, --test_file) or --dataset_name")
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
        for key, value in chosen.items():
            setattr(training_args, key, value)
        training_args.do_eval = chosen.get("do_eval", training_args.do_train and
                                           training_args.eval_strategy != "no" and has_eval)
    if not 0 <= data_args.validation_split_percentage < 100:
        raise UserError(f"--validation_split_percentage {data_args.validation_split_percentage}: expected 0 to <100")


__all__ = ["ArenaArgumentParser", "ArenaTrainingArguments", "DataArguments", "ModelArguments", "parse_args"]
