"""app.py: the Gradio demo, driven in a real browser (Debian's chromium + chromedriver), and the Space it writes."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
import yaml

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: no request leaves
gradio = pytest.importorskip("gradio", reason="the demo extra is not installed: pip install -e '.[demo]'")

from arena_preference import demo as app  # noqa: E402  (after the environment is set)
from pipeline_arena import ArenaPreferencePipeline  # noqa: E402

PROBS = ("winner_model_a", "winner_model_b", "winner_tie")
MODELS = ("alpha", "beta", "gamma")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A saved tiny arena model (embedded:tiny-deberta) whose head is far from uniform, so the bars differ."""
    from arena_preference.model_loading import load_model

    model, tokenizer = load_model("embedded:tiny-deberta", max_length=64)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if not name.startswith("encoder"):
                parameter.normal_(std=1.0, generator=generator)
    folder = tmp_path_factory.mktemp("arena-tiny")
    ArenaPreferencePipeline(model=model.eval(), tokenizer=tokenizer).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def judge(model_dir):
    return app.load_judge(str(model_dir))


@pytest.fixture()
def responses(tmp_path, monkeypatch) -> Path:
    """A responses file: three models' answers to three prompts. The leaderboard's score cache goes to tmp_path."""
    import json

    from arena_preference import leaderboard

    monkeypatch.setattr(leaderboard, "_default_cache_dir", lambda: tmp_path / "score-cache")
    answers = {"What is 2+2?": ["4", "The answer is 5.", "## Answer\n- **4**"],
               "Capital of France?": ["Paris", "Lyon, I think.", "The capital of France is **Paris**."],
               "Write a haiku.": ["Rain on the roof", "No.", "Soft rain on the roof\nwhispers to the town"]}
    path = tmp_path / "responses.jsonl"
    path.write_text("".join(json.dumps({"prompt": prompt, "model": model, "response": answer}) + "\n"
                            for prompt, texts in answers.items() for model, answer in zip(MODELS, texts)))
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_turns_are_split_on_a_separator_line():
    assert app.split_turns("Hi\n---\nWrite a poem\nabout rain") == ["Hi", "Write a poem\nabout rain"]
    assert app.split_turns("a --- b") == ["a --- b"]  # only a line of its own separates
    assert app.split_turns("one turn") == ["one turn"]


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                    reason="no chromium/chromedriver on PATH (Debian: apt-get install chromium chromium-driver)")
def test_battle_and_leaderboard_tabs_in_a_real_browser(tmp_path, model_dir, judge, responses):
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    demo = app.build_demo(str(model_dir), judge=judge)
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update", "--no-first-run",
                 f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}", "--window-size=1280,1100"):
        options.add_argument(flag)
    # The driver by path: selenium would otherwise look for (and try to download) one.
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#prompt textarea"))
        battle = {"prompt": "Hi\n---\nWhat is 2+2?", "response_a": "Hello!\n---\n4",
                  "response_b": "Hey\n---\nThe answer is 5."}
        for key, text in battle.items():
            driver.find_element(By.CSS_SELECTOR, f"#{key} textarea").send_keys(text)
        driver.find_element(By.ID, "judge").click()
        # gr.Label draws one <meter> per class: aria-label is the bar's name, value the probability.
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#probabilities meter")) == 3)
        shown = {m.get_attribute("aria-label"): float(m.get_attribute("value"))
                 for m in driver.find_elements(By.CSS_SELECTOR, "#probabilities meter")}
        note = " ".join(e.text for e in driver.find_elements(By.ID, "style_note"))
        controlled = {m.get_attribute("aria-label"): float(m.get_attribute("value"))
                      for m in driver.find_elements(By.CSS_SELECTOR, "#style_controlled meter")}
        screenshot = tmp_path / "battle.png"
        assert driver.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 0
        print(f"screenshot: {screenshot}")

        # Leaderboard: upload the responses file, rate, read the table's model column and wait for the plot.
        next(tab for tab in driver.find_elements(By.CSS_SELECTOR, "button[role=tab]")
             if tab.text == "Leaderboard").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#responses input[type=file]"))
        driver.find_element(By.CSS_SELECTOR, "#responses input[type=file]").send_keys(str(responses))
        wait.until(lambda d: ".jsonl" in d.find_element(By.ID, "responses").text)  # the uploaded file is listed
        driver.find_element(By.ID, "rate").click()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#ratings_plot img"))
        table = driver.find_element(By.ID, "leaderboard_table").text
        board_screenshot = tmp_path / "leaderboard.png"
        assert driver.save_screenshot(str(board_screenshot))
        print(f"screenshot: {board_screenshot}")
    finally:
        driver.quit()
        demo.close()

    # The page shows the pipeline's swap-averaged probabilities of the two-turn battle.
    styled = app.style_control_reason(judge) is None
    expected = judge({key: app.split_turns(text) for key, text in battle.items()}, swap_tta=True,
                     **({"style_control": True} if styled else {}))
    assert shown == pytest.approx({app.BARS[key]: expected[key] for key in PROBS}, abs=1e-6)
    assert len(app.split_turns(battle["prompt"])) == 2
    if styled:  # the pipeline gives style-controlled probabilities: their bars are shown too
        assert controlled == pytest.approx({app.BARS[k]: expected["style_controlled"][k] for k in PROBS}, abs=1e-6)
    else:
        assert app.NOT_AVAILABLE in note and not controlled
    assert all(model in table for model in MODELS) and "rating" in table


class StyleJudge:
    """A pipeline with the `style_control` option (style_controlled: the three probabilities reversed, to tell them
    apart), whatever the real pipeline has."""

    def __init__(self, judge):
        self.judge = judge

    def _sanitize_parameters(self, style_control: bool | None = None, **options):  # what the app inspects
        return {}, {}, {}

    def __call__(self, battle, style_control: bool = False, **options):
        result = self.judge(battle, **options)
        if style_control:
            result["style_controlled"] = dict(zip(PROBS, reversed([result[key] for key in PROBS])))
        return result


class OlderJudge(StyleJudge):
    """A pipeline from before the `style_control` option: it refuses unknown options."""

    def _sanitize_parameters(self, **options):
        return {}, {}, {}

    def __call__(self, battle, **options):
        if "style_control" in options:
            raise TypeError("arena-preference pipeline: unknown option(s) ['style_control']")
        return self.judge(battle, **options)


def test_style_controlled_view_is_shown_when_the_pipeline_gives_it(judge):
    assert app.style_control_reason(OlderJudge(judge)) == "this model's pipeline has no style_control option"
    styled = StyleJudge(judge)
    assert app.style_control_reason(styled) is None
    bars, controlled = app.score_battle(styled, "What is 2+2?", "4", "5", style_control=True)
    assert list(bars) == list(controlled) == ["A wins", "B wins", "Tie"]
    assert list(controlled.values()) == pytest.approx(list(reversed(list(bars.values()))))
    assert app.score_battle(judge, "What is 2+2?", "4", "5", style_control=False)[1] is None


def test_leaderboard_tab_rates_the_models_of_a_responses_file(model_dir, responses):
    table, plot = app.rate_responses(str(model_dir), str(responses), bootstrap=10)
    assert sorted(table["model"]) == list(MODELS) and list(table["rank"]) == [1, 2, 3]
    assert (table["ci_low"] <= table["rating"]).all() and (table["rating"] <= table["ci_high"]).all()
    assert plot is not None and Path(plot).stat().st_size > 0


def test_a_battle_whose_boxes_disagree_on_turns_is_an_error_on_the_page(judge):
    with pytest.raises(ValueError):
        app.score_battle(judge, "Hi\n---\nMore", "Hello", "Hey", style_control=False)


def _front_matter(readme: Path) -> dict:
    text = readme.read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_written_space_follows_the_space_conventions_and_builds_its_app(tmp_path, model_dir):
    space = app.write_space(model_dir, tmp_path / "space")
    header = _front_matter(space / "README.md")
    assert header["sdk"] == "gradio" and header["app_file"] == "app.py"
    assert header["sdk_version"] == gradio.__version__
    requirements = (space / "requirements.txt").read_text().splitlines()
    assert any(r.startswith("transformers") for r in requirements) and not any(r.startswith("gradio")
                                                                                 for r in requirements)
    # The model travels in model/; the project modules the app imports (leaderboard tab) travel beside it.
    assert (space / "model" / "config.json").is_file() and (space / "model" / "pipeline_arena.py").is_file()
    assert (space / "app.py").is_file()
    for relative in app._local_imports():
        assert (space / relative).is_file(), relative
    assert (space / "arena_preference" / "leaderboard.py").is_file() and (space / "modeling_arena.py").is_file()

    # As a Space runs it: from its own folder, with its own copies first on the path; no browser.
    code = ("import os; os.environ['GRADIO_ANALYTICS_ENABLED'] = 'False'\n"
            "import app, gradio\n"
            "demo = app.build_demo(app.default_model())\n"
            "print(isinstance(demo, gradio.Blocks), app.__file__, app.default_model())\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", code], cwd=space, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    built, app_file, model = result.stdout.split()[-3:]
    assert built == "True" and Path(app_file).parent == space and Path(model) == space / "model"


def test_a_space_may_name_the_hub_model_instead_of_carrying_it(tmp_path, model_dir):
    space = app.write_space(model_dir, tmp_path / "space", model_id="user/arena-tiny")
    assert not (space / "model").exists()
    assert _front_matter(space / "README.md")["models"] == ["user/arena-tiny"]
    assert app.default_model(space) == "user/arena-tiny"


def test_write_space_refuses_a_folder_without_a_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        app.write_space(tmp_path, tmp_path / "space")


def test_a_space_folder_inside_the_model_folder_is_refused(model_dir):
    with pytest.raises(ValueError, match="cannot be inside"):
        app.write_space(model_dir, model_dir / "space")
