"""A Gradio demo of an arena-preference model, and the Hugging Face Space that publishes it.

    pip install -e ".[demo]"
    python app.py --model out/arena-minilm              # http://127.0.0.1:7860 (--host, --port)

Tabs:
- **Battle**: a prompt and two answers -> P(A wins), P(B wins), P(tie), scored in both orders and averaged (swap
  test-time averaging), and the style-controlled probabilities when the model's pipeline gives them
  (`style_control=True`). Multi-turn: separate the turns with a line holding only `---`, in all three boxes.
- **Leaderboard**: a responses file (one row per prompt, model and answer; see leaderboard.py) -> Bradley-Terry
  ratings with intervals and their plot, from `leaderboard.leaderboard`.

A Space is a folder with `app.py` at its root and a README.md whose YAML header says `sdk: gradio`. Write one next
to a trained model, then publish it:

    python -c "from arena_preference.demo import write_space; write_space('out/arena-minilm', 'out/space')"   # or train.py --space_dir
    python -c "from huggingface_hub import upload_folder; upload_folder(folder_path='out/arena-space', \
        repo_id='user/arena-demo', repo_type='space')"          # after create_repo(..., repo_type='space',
                                                                # space_sdk='gradio')

`write_space` copies the model into the Space (`model/`), or with `model_id="user/arena-deberta"` names the Hub
model repo instead (a small Space that downloads the model when it starts). See docs/demo.md.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parent
ROOT = PACKAGE.parent  # the clone, or site-packages: where the remote-code modules and arena_dataset live
# A Space's app.py, and a clone's: the demo serving the model found by `default_model` (the Space's model/ folder).
APP_PY = '''"""The arena-preference demo (Gradio), as a Space or from a clone: `python app.py --model out/arena-minilm`."""

from arena_preference.demo import build_demo, default_model, main  # noqa: F401  (a Space's runtime imports these)

if __name__ == "__main__":
    main()
'''
TABLE_HEADERS = ("rank", "model", "rating", "ci_low", "ci_high", "battles", "style_controlled_rating")
TURN_SEPARATOR = "---"  # a line holding only this separates the turns of a multi-turn battle
NOT_AVAILABLE = "Style-controlled view: not available for this model"
# Pipeline keys -> what the bars are called on the page.
BARS = {"winner_model_a": "A wins", "winner_model_b": "B wins", "winner_tie": "Tie"}
EXAMPLES = [
    ["What is the boiling point of water at sea level in Celsius?",
     "Water boils at 90 °C at sea level, and higher in the mountains.", "100 °C."],
    ["Give me three tips for sleeping better.", "Sleep more.",
     "Here are three tips:\n\n1. **Keep a schedule**.\n2. **Dim the screens** an hour before bed.\n"
     "3. **Keep the room cool**, dark and quiet."],
    ["Hi!\n---\nWrite a haiku about rain.", "Hello! How can I help?\n---\nSoft rain on the roof\nwhispers to the "
     "sleeping town\npuddles hold the sky", "Hey.\n---\nRain falls. It is wet."],
]


# ----------------------------------------------------------------------------------------------------------- model
def split_turns(text: str) -> list[str]:
    """'turn 1\\n---\\nturn 2' -> ['turn 1', 'turn 2']: a line holding only `---` ends a turn."""
    turns, lines = [], []
    # split("\n"), not splitlines(): pasted text may hold U+2028, U+0085 or form feeds inside a turn.
    for line in (text or "").replace("\r\n", "\n").split("\n"):
        if line.strip() == TURN_SEPARATOR:
            turns.append("\n".join(lines).strip())
            lines = []
        else:
            lines.append(line)
    return turns + ["\n".join(lines).strip()]


def load_judge(model: str) -> Any:
    """The arena-preference pipeline of a model folder or Hub repo, with its own saved code (as a Space runs it)."""
    import torch
    from transformers import pipeline

    return pipeline("arena-preference", model=model, trust_remote_code=True,
                    device=0 if torch.cuda.is_available() else -1)


def training_summary(model: str) -> str | None:
    """"Trained on N battles." and the first caveat of the model card's Limits, from the model's README.md (a
    local folder's, or a Hub repo's when huggingface_hub can fetch it); None when there is no card to read."""
    import re

    card = Path(model) / "README.md"
    if not card.is_file():
        try:
            from huggingface_hub import hf_hub_download

            card = Path(hf_hub_download(model, "README.md"))
        except Exception:  # offline, private, or no card: the page simply says nothing about the training data
            return None
    text = card.read_text(encoding="utf-8", errors="replace")
    size = re.search(r"^([\d,]+) training battles", text, re.MULTILINE)
    limits = text.split("\n## Limits\n", 1)[1] if "\n## Limits\n" in text else ""
    caveat = re.search(r"^- (.+(?:\n  .+)*)", limits, re.MULTILINE)
    first_limit = " ".join(caveat.group(1).split()) if caveat else ""
    parts = [first_limit] if first_limit.startswith("Trained on") else [  # the small-data caveat names the size
        f"Trained on {size.group(1)} battles." if size else "", first_limit]
    return " ".join(part for part in parts if part) or None


def style_control_reason(judge: Any) -> str | None:
    """None when the pipeline gives style-controlled probabilities for this model, else why not (detected: older
    pipelines have no `style_control` option, and a model without style features may refuse it)."""
    if "style_control" not in inspect.signature(judge._sanitize_parameters).parameters:
        return "this model's pipeline has no style_control option"
    try:
        result = judge({"prompt": "Hi", "response_a": "Hello!", "response_b": "Hey"}, style_control=True)
    except (TypeError, ValueError) as err:
        return " ".join(str(err).split())
    if not isinstance(result.get("style_controlled"), dict):
        return "the pipeline returned no style-controlled probabilities"
    return None


def score_battle(judge: Any, prompt: str, response_a: str, response_b: str,
                 style_control: bool) -> tuple[dict[str, float], dict[str, float] | None]:
    """Bars for the swap-averaged probabilities, and for the style-controlled ones (None without style control)."""
    battle = {"prompt": split_turns(prompt), "response_a": split_turns(response_a),
              "response_b": split_turns(response_b)}
    result = judge(battle, swap_tta=True, **({"style_control": True} if style_control else {}))
    bars = {BARS[key]: result[key] for key in BARS}
    controlled = result.get("style_controlled") if style_control else None
    return bars, (None if controlled is None else {BARS[key]: controlled[key] for key in BARS})


# ------------------------------------------------------------------------------------------------------------ page
def build_demo(model: str, judge: Any = None) -> Any:
    """The Blocks app for `model` (a folder or Hub id); `judge` is its pipeline when already loaded."""
    import gradio as gr

    judge = judge if judge is not None else load_judge(model)
    style_reason = style_control_reason(judge)

    def on_battle(prompt: str, response_a: str, response_b: str):
        try:
            bars, controlled = score_battle(judge, prompt, response_a, response_b, style_reason is None)
        except ValueError as err:  # e.g. the three boxes hold different numbers of turns
            raise gr.Error(str(err)) from None
        return bars, controlled

    with gr.Blocks(title="Arena preference") as demo:
        gr.Markdown(f"# Which answer will people prefer?\nModel: `{model}`")
        trained_on = training_summary(model)
        if trained_on:  # a model trained on 48 battles prefers "Lyon" as the capital of France: say so up front
            gr.Markdown(trained_on, elem_id="trained_on")
        with gr.Tab("Battle", id="battle"):
            gr.Markdown(
                f"A prompt and two answers. Multi-turn: end each turn with a line holding only `{TURN_SEPARATOR}`, "
                "in all three boxes (as many turns in each). The battle is scored in both orders (A, B and B, A) "
                "and averaged."
            )
            prompt = gr.Textbox(label="Prompt", lines=3, elem_id="prompt")
            with gr.Row():
                response_a = gr.Textbox(label="Answer A", lines=6, elem_id="response_a")
                response_b = gr.Textbox(label="Answer B", lines=6, elem_id="response_b")
            submit = gr.Button("Judge", variant="primary", elem_id="judge")
            with gr.Row():
                probabilities = gr.Label(label="Swap-averaged probabilities", num_top_classes=3,
                                         elem_id="probabilities")
                with gr.Column():
                    controlled = gr.Label(label="Style-controlled: length and markdown held equal",
                                          num_top_classes=3, elem_id="style_controlled",
                                          visible=style_reason is None)
                    if style_reason is not None:
                        gr.Markdown(f"{NOT_AVAILABLE} ({style_reason}).", elem_id="style_note")
            gr.Examples(EXAMPLES, [prompt, response_a, response_b])
            submit.click(on_battle, [prompt, response_a, response_b], [probabilities, controlled])
        with gr.Tab("Leaderboard", id="leaderboard"):
            _leaderboard_tab(gr, model)
    return demo


def _leaderboard_tab(gr: Any, model: str) -> None:
    try:
        from arena_preference import leaderboard
    except ImportError as err:
        gr.Markdown(f"The leaderboard needs leaderboard.py and its dependencies, which did not import here ({err}).")
        return
    gr.Markdown(
        "Upload the answers of several models to the same prompts (JSONL/CSV/JSON/parquet, one row per prompt, model "
        "and answer: `prompt`, `model`, `response`). Every pair of models is judged on each prompt, and the "
        "predicted outcomes are fitted with Bradley-Terry with ties (Arena scale, bootstrap intervals)."
    )
    upload = gr.File(label="Responses file", file_types=[".jsonl", ".json", ".csv", ".parquet"], elem_id="responses")
    rounds = gr.Slider(0, 200, value=50, step=10, label="Bootstrap rounds (0: no intervals)")
    run = gr.Button("Rate the models", variant="primary", elem_id="rate")
    # The table's columns before an upload (gradio would show "1 | 2 | 3"); a rating adds human_rating with votes.
    table = gr.Dataframe(value=[], headers=list(TABLE_HEADERS), label="Leaderboard", elem_id="leaderboard_table")
    plot = gr.Image(label="Ratings", type="filepath", elem_id="ratings_plot")

    def on_rate(path: str | None, bootstrap: float):
        if not path:
            raise gr.Error("upload a responses file first")
        try:
            return rate_responses(model, path, int(bootstrap))
        except (ValueError, FileNotFoundError) as err:  # a bad file or option: the user's to fix, said on the page
            raise gr.Error(str(err)) from None

    run.click(on_rate, [upload, rounds], [table, plot])


def rate_responses(model: str, responses: str, bootstrap: int) -> tuple[Any, str | None]:
    """(the leaderboard table as a DataFrame, the ratings plot's file) for a responses file, from leaderboard.py;
    its outputs go to a fresh temporary folder (one per request: several users may rate at once)."""
    from arena_preference import leaderboard
    import pandas as pd

    output_dir = Path(tempfile.mkdtemp(prefix="arena-leaderboard-"))
    leaderboard.leaderboard(model, responses=responses, output_dir=str(output_dir), bootstrap=bootstrap)
    plot_file = output_dir / "ratings.png"
    # Ratings to a tenth of a point (the csv keeps every digit); no empty column (e.g. without style control)
    table = pd.read_csv(output_dir / "leaderboard.csv").dropna(axis=1, how="all").round(1)
    return table, (str(plot_file) if plot_file.exists() else None)


# ----------------------------------------------------------------------------------------------------------- Space
def write_space(model_dir: str | Path, space_dir: str | Path, model_id: str | None = None) -> Path:
    """Write a Hugging Face Space for a trained model into `space_dir`: app.py and the project modules it imports,
    requirements.txt, and a README.md whose YAML header makes it a Gradio Space.

    The model is copied into `space_dir/model` (a Space that works on its own, also for a private model), unless
    `model_id` names its Hub repo: then the Space stays small and loads the model from the Hub when it starts.
    Publish with `huggingface_hub.upload_folder(folder_path=space_dir, repo_id=..., repo_type="space")`.
    """
    model_dir, space = Path(model_dir), Path(space_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir}: no config.json, so not a trained model folder")
    if model_id is None and space.resolve().is_relative_to(model_dir.resolve()):
        raise ValueError(f"{space}: the Space folder cannot be inside the model folder {model_dir} it copies")
    card = _space_card(model_dir.name, model_id)  # first: it needs gradio's version, the one thing that may be absent
    space.mkdir(parents=True, exist_ok=True)
    for relative in sorted(_local_imports()):
        (space / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative, space / relative)
    (space / "app.py").write_text(APP_PY)
    if model_id is None:
        shutil.rmtree(space / "model", ignore_errors=True)
        shutil.copytree(model_dir, space / "model", ignore=shutil.ignore_patterns("checkpoint-*", "runs", ".*"))
    (space / "requirements.txt").write_text("\n".join(_requirements()) + "\n")
    (space / "README.md").write_text(card)
    return space


def _local_imports() -> set[str]:
    """The files a Space must carry (paths relative to ROOT): this package's modules and the top-level modules they
    import (the remote-code modules, arena_dataset), followed through each other."""
    found = {str(path.relative_to(ROOT)) for path in PACKAGE.glob("*.py")}
    todo = [ROOT / relative for relative in found]
    while todo:
        tree = ast.parse(todo.pop().read_text())
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level
                     else [])
            for name in names:
                path = ROOT / f"{name.split('.')[0]}.py"
                if path.is_file() and path.name not in found:
                    found.add(path.name)
                    todo.append(path)
    return found


def _requirements() -> list[str]:
    """The project's own dependencies (a Space installs gradio itself, at the README's sdk_version)."""
    from importlib.metadata import PackageNotFoundError, requires

    pyproject = ROOT / "pyproject.toml"
    if pyproject.is_file():
        import tomllib

        return list(tomllib.loads(pyproject.read_text())["project"]["dependencies"])
    try:
        return [r for r in requires("arena-preference") or [] if "extra ==" not in r]
    except PackageNotFoundError:
        return ["torch", "transformers>=5.0", "numpy"]


def _space_card(title: str, model_id: str | None) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:  # the Space runs the gradio it was written with (sdk_version)
        gradio_version = version("gradio")
    except PackageNotFoundError:
        raise ImportError("writing a Space needs gradio: pip install 'arena-preference[demo]'") from None
    models = f"models:\n- {model_id}\n" if model_id else ""
    return (
        f"---\ntitle: {title}\nemoji: ⚖️\ncolorFrom: indigo\ncolorTo: blue\nsdk: gradio\n"
        f"sdk_version: {gradio_version}\napp_file: app.py\npinned: false\nlicense: apache-2.0\n{models}"
        "tags:\n- arena-preference\n---\n\n"
        f"# {title}\n\nWhich of two chatbot answers will people prefer? P(A wins), P(B wins) and P(tie) from an "
        "arena-preference model, and a leaderboard of several models' answers. Made by `app.write_space`; "
        "`python app.py` serves it locally.\n"
    )


def default_model(folder: str | Path | None = None) -> str:
    """The model a Space serves: `folder`'s (default: the working directory's) `model/` folder, else the first
    model its README names, else train.py's default output folder."""
    folder = Path.cwd() if folder is None else Path(folder)
    if (folder / "model" / "config.json").is_file():
        return str(folder / "model")
    readme = folder / "README.md"
    if readme.is_file() and readme.read_text().startswith("---\n"):
        import yaml

        header = yaml.safe_load(readme.read_text().split("---\n")[1]) or {}
        if header.get("models"):
            return header["models"][0]
    return "out/arena-minilm"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="a trained model folder or Hub repo id (default: the "
                        "Space's model/ folder or README models:, else out/arena-minilm)")
    parser.add_argument("--host", default=None, help="address to serve on (default: gradio's, 127.0.0.1; a Space "
                        "sets 0.0.0.0 through GRADIO_SERVER_NAME)")
    parser.add_argument("--port", type=int, default=None, help="port (default: gradio's, 7860)")
    args = parser.parse_args(argv)
    model = args.model or default_model()
    if not Path(model).exists() and model == "out/arena-minilm":
        sys.exit(f"app.py: error: {model}: no such folder; train a model first (python train.py) or pass --model")
    problem = local_model_problem(model)
    if problem:  # before transformers would try the Hub for half a minute and print a page of traceback
        sys.exit(f"app.py: error: {problem}")
    try:
        judge = load_judge(model)
    except Exception as err:  # the model's own loader names broken files (ModelFilesError), transformers the rest
        if os.environ.get("ARENA_DEBUG", "") not in ("", "0"):
            raise
        sys.exit(f"app.py: error: --model {model}: {' '.join(str(err).split())[:500]} (ARENA_DEBUG=1 shows the "
                 "traceback)")
    build_demo(model, judge).launch(server_name=args.host, server_port=args.port)


def local_model_problem(model: str) -> str | None:
    """Why `model` cannot be a local model folder when it is meant as one (a path that is not there, a folder with
    no config.json), else None (a folder to load, or a Hub id)."""
    from arena_preference.model_loading import _is_a_path

    folder = Path(model).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            return f"--model {model}: no config.json, so not a saved model (train one with python train.py)"
        return None
    if folder.exists() or _is_a_path(model) or model.startswith((".", "/", "~")):
        return (f"--model {model}: no such folder (nothing saved there; check the path, e.g. train.py's "
                "--output_dir)")
    return None


if __name__ == "__main__":
    main()
