"""Train, evaluate, predict and publish an arena preference model: a script over `transformers.Trainer`.

    python train.py                     # the main job: the example battles, embedded:minilm-l6, out/arena-minilm
    python train.py --help              # the project's options first (--help-all: every TrainingArguments option)
    python train.py config.yaml         # the same keys as the command line, in a YAML or JSON file
    python train.py examples/finetune.yaml   # fine-tune the whole encoder instead of the frozen-encoder recipe
    python train.py --model_name_or_path out/arena-minilm --do_predict --test_file test.csv --output_dir out/pred
    torchrun --nproc_per_node 2 train.py ...      accelerate launch --multi_gpu --num_processes 2 train.py ...

It wires the modules that do the work: training_arguments (options and the recipe's defaults), recipe (model and
battles), scoring (metrics, calibration, predictions), training_report (model card, plots) and hub_io (atomic
saves, resume checks, the push). When none of --do_train, --do_eval, --do_predict is given, each runs when its
data is there. The output directory is a complete Hub repo. User errors end with one line on stderr and exit
status 1 (2 for a bad option); set ARENA_DEBUG=1 for the full traceback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Any

from huggingface_hub.errors import StrictDataclassError

from arena_preference.run_folder import OutputFolderLock, UserError, claim_output_dir, write_atomically, write_record
from arena_preference.hub_io import check_resume_matches, push, resolve_resume, save_repo
from arena_preference.recipe import is_trained, load_model_and_tokenizer, load_splits, tokenize, trainer_class
from arena_preference.scoring import build_compute_metrics, calibrate, predict, probabilities
from arena_preference.training_arguments import ArenaTrainingArguments, DataArguments, ModelArguments, parse_args
from arena_preference.training_guard import DivergenceGuard

logger = logging.getLogger("train")


def run(model_args: ModelArguments, data_args: DataArguments, training_args: ArenaTrainingArguments) -> dict[str, Any]:
    """Train / evaluate / predict / publish as asked; returns {"trainer", "metrics", "output_dir", ...}."""
    import datasets
    import transformers
    from transformers import set_seed

    is_main = training_args.process_index == 0
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        level=logging.INFO if is_main else logging.WARNING, force=True)
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    transformers.utils.logging.disable_progress_bar()  # its bars ("Writing model shards" at every save) are noise
    datasets.utils.logging.set_verbosity(training_args.get_process_log_level())
    set_seed(training_args.seed)
    # One run per folder: the lock is taken before the ownership check reads the folder, and held to the end of
    # the run (two runs started at once would both find it empty). The main process holds it for all ranks.
    with OutputFolderLock(training_args.output_dir) if is_main else contextlib.nullcontext():
        result = _run_in_folder(model_args, data_args, training_args, is_main)
    return result


def _run_in_folder(model_args: ModelArguments, data_args: DataArguments, training_args: ArenaTrainingArguments,
                   is_main: bool) -> dict[str, Any]:
    """`run` once the output folder is locked."""
    import torch

    from arena_preference import training_report
    from encoding_arena import ArenaCollator

    resume = resolve_resume(training_args) if training_args.do_train else None
    # parse_args marks a run given no --output_dir with its command's key: the same job again may replace its own
    # finished run in the default folder (the README's first command is repeatable as written).
    command = getattr(training_args, "_arena_command", None)
    default_folder = command is not None and not getattr(training_args, "_arena_output_dir_given", True)
    writes_run = claim_output_dir(training_args.output_dir, resume=bool(resume),
                                  overwrite=training_args.overwrite_output_dir,
                                  model_name_or_path=model_args.model_name_or_path, is_main_process=is_main,
                                  rerun_of=command if default_folder else None)
    if writes_run and is_main:
        write_record(training_args.output_dir, command, default_folder, finished=False)
    # train.py pushes once, at the end, the whole repo; Trainer's own pushes (every save) stay off.
    wants_push, training_args.push_to_hub = training_args.push_to_hub, False
    output_dir = Path(training_args.output_dir)
    if training_args.dataloader_pin_memory and not torch.cuda.is_available():
        training_args.dataloader_pin_memory = False  # pinning needs an accelerator; on CPU it only warns

    with training_args.main_process_first(desc="loading the model and the battles"):
        splits = load_splits(data_args, training_args)  # first: a bad file fails before a model is loaded
        if data_args.teacher_file and "train" in splits:
            from arena_preference.distillation import add_teacher_targets

            splits["train"] = add_teacher_targets(splits["train"], data_args.teacher_file, data_args.distill_weight)
        model, tokenizer = load_model_and_tokenizer(model_args)
        if resume:  # before Trainer loads its optimizer state into a model of another shape
            check_resume_matches(resume, model.config)
        if model_args.lora_r and training_args.do_train:
            from arena_preference.lora import apply_lora

            # under --bf16 the frozen base weights are held in bf16 (docs/llm.md: the memory each recipe needs)
            apply_lora(model, model_args.lora_r, model_args.lora_alpha, model_args.lora_dropout,
                       model_args.lora_target_modules, base_dtype=torch.bfloat16 if training_args.bf16 else None)
        if training_args.do_train:  # the saved config says how the weights were trained, as the card does
            model.config.encoder_frozen = model_args.freeze_encoder
        tokenized = tokenize(splits, tokenizer, model, model_args, data_args, training_args)
        compute_metrics = build_compute_metrics()
    logger.info("model %s: head=%s, max_length=%d, %s parameters (%s trainable%s)", model_args.model_name_or_path,
                model.config.head, model.config.max_length, f"{model.num_parameters():,}",
                f"{model.num_parameters(only_trainable=True):,}",
                ": the head, on pooled towers of the frozen encoder" if model_args.freeze_encoder else "")
    scores_only = not training_args.do_train and (training_args.do_eval or training_args.do_predict)
    if scores_only and not is_trained(model_args.model_name_or_path, model):
        logger.warning("%s is an encoder, not a trained arena model: its head is freshly initialised, so these "
                       "evaluations and predictions are those of an untrained model (add --do_train, or point "
                       "--model_name_or_path at a trained output folder)", model_args.model_name_or_path)
    if training_args.eval_strategy != "no" and "validation" not in tokenized:
        training_args.eval_strategy = "no"  # nothing to evaluate on during training

    trainer = trainer_class(model_args.freeze_encoder)(  # frozen encoder: checkpoints hold the head only
        model=model, args=training_args, train_dataset=tokenized.get("train"),
        eval_dataset=tokenized.get("validation"), processing_class=tokenizer,
        data_collator=ArenaCollator(pad_token_id=tokenizer.pad_token_id or 0), compute_metrics=compute_metrics,
        callbacks=[DivergenceGuard(model)],
    )
    metrics: dict[str, float] = {}
    result: dict[str, Any] = {"trainer": trainer, "output_dir": output_dir, "metrics": metrics}

    if training_args.do_train:
        logger.info("training on %d battles, evaluating on %s", len(tokenized["train"]),
                    len(tokenized["validation"]) if "validation" in tokenized else "none")
        train_output = trainer.train(resume_from_checkpoint=resume)
        train_metrics = {**train_output.metrics, "train_samples": len(tokenized["train"])}
        train_metrics.pop("total_flos", None)  # Trainer cannot count an ArenaModel's FLOPs: it would print 0GF
        trainer.log_metrics("train", train_metrics)
        trainer.save_metrics("train", train_metrics)
        trainer.save_state()
        metrics.update(train_metrics)
        from arena_preference.lora import merge_lora

        if merge_lora(trainer.model):  # the repo holds plain weights: it loads with torch + transformers alone
            logger.info("merged the LoRA adapters into the encoder's weights")
        if trainer.is_world_process_zero():
            save_repo(trainer.model, tokenizer, output_dir)
            logger.info("saved the model repo to %s", output_dir)

    eval_probs = eval_labels = None
    if training_args.do_eval:
        output = trainer.predict(tokenized["validation"], metric_key_prefix="eval")
        eval_metrics = {**output.metrics, "eval_samples": len(tokenized["validation"])}
        eval_probs, eval_labels = probabilities(output.predictions), output.label_ids
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
        if model_args.space_dir and (output_dir / "config.json").is_file():
            from arena_preference.demo import write_space

            write_space(output_dir, model_args.space_dir)
            logger.info("wrote a Gradio Space for %s to %s (publish it: docs/demo.md)", output_dir,
                        model_args.space_dir)
        if training_args.do_predict:
            # Under --bf16/--fp16 accelerate wraps forward in autocast; the pipeline gets the plain model and
            # predicts in the model's own precision.
            plain = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
            path, precision = predict(plain, tokenizer, splits["test"], output_dir,
                                      training_args.per_device_eval_batch_size, data_args.swap_tta,
                                      model_args.precision, data_args.style_control)
            trainer.save_metrics("predict", {"predict_samples": len(splits["test"]), "predict_precision": precision})
            logger.info("wrote %d predictions to %s (%s)", len(splits["test"]), path, precision)
            result["predictions"] = path
        if wants_push:
            if not training_args.do_train and not (output_dir / "config.json").is_file():
                raise UserError(f"--push_to_hub: {output_dir} holds no model (train one, or point --output_dir at one)")
            result["repo_id"] = push(output_dir, training_args)
            logger.info("pushed %s to the Hub as %s", output_dir, result["repo_id"])
        if writes_run:
            write_record(output_dir, command, default_folder, finished=True)
    return result


# StrictDataclassError: a config.json whose values transformers' strict config validation refuses.
USER_ERRORS = (UserError, ValueError, FileNotFoundError, ImportError, OSError, StrictDataclassError)


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



def cli() -> None:
    """The `arena-train` console script: `main` without its return value (a console script passes what it returns to
    sys.exit, which would print it and exit with status 1)."""
    main()


if __name__ == "__main__":
    cli()
