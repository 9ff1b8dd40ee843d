"""What train.py leaves next to the model for people: the model card (README.md with Hub YAML metadata) and PNG
plots (training curve, confusion matrix, calibration). Plots use matplotlib's Agg backend (no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from configuration_arena import LABELS

# Hub ids of the embedded backbones' weights, for the card's base_model (tiny-deberta is random: none).
BASE_MODELS = {"embedded:minilm-l6": "sentence-transformers/all-MiniLM-L6-v2", "embedded:tiny-deberta": None}
CARD_METRICS = ("log_loss", "accuracy", "f1_macro", "precision_macro", "recall_macro")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_training_curve(log_history: list[dict[str, Any]], path: Path) -> Path:
    """Training loss and evaluation log loss against the optimizer step (from Trainer's log_history)."""
    plt = _pyplot()
    train = [(e["step"], e["loss"]) for e in log_history if "loss" in e and "step" in e]
    evals = [(e["step"], e["eval_log_loss"]) for e in log_history if "eval_log_loss" in e and "step" in e]
    fig, ax = plt.subplots(figsize=(6, 4))
    if train:
        ax.plot(*zip(*train), marker=".", label="training loss")
    if evals:
        ax.plot(*zip(*evals), marker="o", label="validation log loss")
    ax.axhline(np.log(3), color="grey", linestyle=":", label="uniform guess (log 3)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title("Training curve")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_confusion_and_calibration(probs: np.ndarray, labels: np.ndarray, output_dir: Path) -> list[Path]:
    """confusion_matrix.png (true class vs most probable class) and calibration.png (reliability diagram: mean
    predicted probability against observed frequency, per class) for `(N, 3)` probabilities and `(N,)` labels."""
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import ConfusionMatrixDisplay

    plt = _pyplot()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    short = ["A wins", "B wins", "tie"]

    fig, ax = plt.subplots(figsize=(5, 4.5))
    ConfusionMatrixDisplay.from_predictions(labels, probs.argmax(1), labels=[0, 1, 2], display_labels=short, ax=ax,
                                            colorbar=False)
    ax.set_title(f"Confusion matrix (validation, {len(labels)} battles)")
    fig.tight_layout()
    confusion = output_dir / "confusion_matrix.png"
    fig.savefig(confusion, dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfectly calibrated")
    bins = max(2, min(10, len(labels) // 10))
    for k, name in enumerate(short):
        observed, predicted = calibration_curve(labels == k, probs[:, k], n_bins=bins, strategy="quantile")
        ax.plot(predicted, observed, marker="o", label=name)
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed frequency")
    ax.set_title(f"Calibration (validation, {bins} quantile bins)")
    ax.legend()
    fig.tight_layout()
    calibration = output_dir / "calibration.png"
    fig.savefig(calibration, dpi=100)
    plt.close(fig)
    return [confusion, calibration]


def _base_model(name: str) -> str | None:
    if name in BASE_MODELS:
        return BASE_MODELS[name]
    return None if Path(name).exists() else name  # a local folder is not a Hub id


def _hub_dataset(data_args: Any) -> str | None:
    name = data_args.dataset_name
    return name if name and not Path(name).exists() else None


def describe_head(config: Any) -> str:
    """One line on the head that is saved, from its config (what the card says must be what the weights are)."""
    pooling = config.pooling if config.pooling != "mean" else (
        f"mean of the last {config.pool_layers} layers" if getattr(config, "pool_layers", 1) > 1 else "mean")
    style = "with" if config.style_features else "without"
    if getattr(config, "cross_encoder", False):
        return (f"joint cross-encoder: one sequence per battle, read in both orders, pooled ({config.pooling}); "
                f"three logits per order ({style} style features), the two orders' probabilities averaged, so "
                f"swapping A and B swaps P(A) and P(B)")
    if config.head == "classify":
        return (f"classify, symmetric in A and B by construction: content logits from the two pooled towers "
                f"({pooling} pooling; A = w1.a + w2.b, B = w1.b + w2.a, tie from |a - b|) plus additive style "
                f"terms ({style} style features; the content logits alone are the style-controlled view), "
                f"so swapping A and B swaps P(A) and P(B)")
    return (f"rank ({config.rank_loss}): a reward per response from its pooled tower ({pooling} pooling); "
            f"P(A), P(B), P(tie) from the reward gap with Davidson's tie parameter ({style} style features)")


def shipped_code() -> list[str]:
    """The remote-code modules that `save_repo` copies next to the weights (those the config's classes import)."""
    from transformers.dynamic_module_utils import get_relative_import_files

    modeling = Path(__file__).resolve().parents[1] / "modeling_arena.py"
    found = {Path(p).name for p in get_relative_import_files(str(modeling))} | {modeling.name}
    return sorted(found | {"configuration_arena.py"})


# Under this many training battles the card (and the demo, which shows the card's first limit) says first that the
# model shows the interface and cannot judge answers: trained on the 48 example battles it prefers "I think it is
# Lyon." to "Paris." as the capital of France.
SMALL_TRAINING_SET = 1000


def _small_data_caveat(train_samples: Any) -> str:
    if not isinstance(train_samples, int) or train_samples >= SMALL_TRAINING_SET:
        return ""
    return (f"\n- Trained on only {train_samples} battles: enough to show the interface, not to judge answers (it "
            "follows length and style, even to a wrong answer); train on thousands of real votes before trusting it.")


def llm_notes(config: Any, data_args: Any) -> str:
    """The card's paragraph on the cross-encoder, merged LoRA adapters and distillation ("" for none of them)."""
    notes = []
    if getattr(config, "cross_encoder", False):
        notes.append("It is a joint cross-encoder, not a dual tower: the encoder reads one sequence per battle "
                     "(prompt, answer A, answer B, with `User:` / `Response A:` / `Response B:` markers; the last exchange "
                     "always keeps all three parts) in both orders, and the probabilities are the average of both "
                     "orders', so swapping A and B swaps P(A) and P(B) exactly.")
    lora = getattr(config, "lora", None)
    if lora:
        targets = lora["target_modules"]
        notes.append(f"The encoder was fine-tuned with LoRA (r={lora['r']}, alpha={lora['alpha']:g}, dropout "
                     f"{lora['dropout']:g}, on {targets if isinstance(targets, str) else ', '.join(targets)}); the "
                     f"adapters were {'merged into' if lora.get('merged') else 'NOT merged into'} the saved weights, "
                     "so loading needs neither peft nor adapter files.")
    if getattr(data_args, "teacher_file", None):
        notes.append(f"Distilled: trained on soft targets, (1 - w) x vote + w x the teacher's probabilities from "
                     f"`{Path(data_args.teacher_file).name}` (w = {data_args.distill_weight:g}).")
    return "\n" + " ".join(notes) + "\n" if notes else ""


def model_card(model_args: Any, data_args: Any, training_args: Any, config: Any, metrics: dict[str, float]):
    """A `huggingface_hub.ModelCard`: YAML metadata (library_name, pipeline_tag, tags, datasets, base_model,
    model-index with the evaluation results) and a body that says how to load the model and what it cannot do."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    repo_id = training_args.hub_model_id or Path(training_args.output_dir).resolve().name
    eval_file = data_args.validation_file or (None if data_args.dataset_name else data_args.train_file)
    # A file is named without its local folder (the card is published); a Hub dataset by its id.
    eval_source = Path(eval_file).name if eval_file else data_args.dataset_name or "validation"
    dataset = _hub_dataset(data_args)
    eval_split = "validation" if data_args.validation_file or dataset else "held-out by prompt"
    trained = ("the head only, on pooled towers of the frozen encoder" if model_args.freeze_encoder
               else "the whole encoder and the head")
    if getattr(config, "lora", None):
        trained = "LoRA adapters on the encoder (merged into its weights) and the head"
    results = [
        EvalResult(task_type="text-classification", task_name="Human preference (A / B / tie)",
                   dataset_type=dataset or "arena-battles", dataset_name=eval_source,
                   dataset_split=eval_split, metric_type=name, metric_name=name.replace("_", " "),
                   metric_value=round(float(metrics[f"eval_{name}"]), 4))
        for name in CARD_METRICS if f"eval_{name}" in metrics
    ]
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag="text-classification",
        tags=["arena-preference", "reward-model", "preference", "chatbot-arena", "custom_code", config.head],
        datasets=[dataset] if dataset else None,
        base_model=_base_model(model_args.model_name_or_path),
        model_name=repo_id,
        eval_results=results or None,
        license="apache-2.0",
    )
    rows = "\n".join(f"| {name} | {metrics[f'eval_{name}']:.4f} |" for name in
                     (*CARD_METRICS, *(f"f1_{label}" for label in LABELS)) if f"eval_{name}" in metrics)
    table = (f"| metric | value |\n| --- | --- |\n{rows}" if rows else "No evaluation was run.")
    head = describe_head(config)
    encoder = f"`{model_args.model_name_or_path}`, {config.encoder_config.model_type}"
    reads = (f"A joint cross-encoder: one encoder ({encoder}) reads each battle as one sequence (prompt, answer A, "
             "answer B), in both orders" if getattr(config, "cross_encoder", False) else
             f"A dual-tower model: one shared encoder ({encoder}) reads (prompt + response A) and (prompt + "
             "response B)")
    shipped = ", ".join(f"`{name}`" for name in shipped_code())
    body = f"""
# {repo_id}

Predicts which of two chatbot answers a person prefers: (prompt, response A, response B) -> P(winner_model_a),
P(winner_model_b), P(winner_tie). {reads}, up to {config.max_length} tokens each (`{config.truncation}` truncation);
head: {head}; style features: {config.style_features}. Trained with `train.py` of the arena-preference project.
{llm_notes(config, data_args)}
## Evaluation

On `{eval_source}` ({metrics.get('eval_samples', '?')} battles, {eval_split}); log loss is the Kaggle LMSYS
metric (lower is better; a uniform guess scores {np.log(3):.4f}).

{table}

![training curve](training_curve.png) ![confusion matrix](confusion_matrix.png) ![calibration](calibration.png)

## How to use

```python
from transformers import AutoModel, pipeline

judge = pipeline("arena-preference", model="{repo_id}", trust_remote_code=True)
judge({{"prompt": "What is 2+2?", "response_a": "4", "response_b": "5"}})
# -> {{"winner_model_a": ..., "winner_model_b": ..., "winner_tie": ..., "label": ...}}
judge(list_of_battles, batch_size=16, swap_tta=True)   # multi-turn: lists of turns; Kaggle JSON-list strings too
model = AutoModel.from_pretrained("{repo_id}", trust_remote_code=True)
```

The code ({shipped}) ships with the weights and needs only torch and transformers, hence
`trust_remote_code=True`.

## Training

{metrics.get('train_samples', '?')} training battles{' (+ A/B-swapped copies)' if data_args.swap_augment else ''};
{trained}; learning rate {training_args.learning_rate}, weight decay {training_args.weight_decay},
{training_args.num_train_epochs} epoch(s) (max_steps {training_args.max_steps}), batch
{training_args.per_device_train_batch_size} per device x {training_args.gradient_accumulation_steps} accumulation,
optimizer {getattr(training_args.optim, 'value', training_args.optim)}, seed {training_args.seed}.

## Limits
{_small_data_caveat(metrics.get('train_samples'))}
- It predicts what the people who voted preferred (length, formatting and tone matter to them), not which answer
  is correct or safe. Longer answers win most decisive battles and the model learns that too.
- Small training sets give probabilities close to the class prior; check the calibration plot before trusting
  them. English text only was seen in training.
- Conversations longer than {config.max_length} tokens per side are cut (`{config.truncation}`).
"""
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n{body}")


__all__ = ["describe_head", "model_card", "shipped_code", "plot_confusion_and_calibration", "plot_training_curve"]
