"""The files that ship with a model import nothing a bare machine lacks, as transformers sees them.

transformers reads every import statement of a remote-code file (function bodies included, `try` blocks skipped)
and refuses to load the model when one names a missing package. This checks it statically, on every machine, with
transformers' own functions; tests/test_bare_machine.py checks it for real in a venv holding only torch and
transformers.
"""

from __future__ import annotations

import sys
from pathlib import Path

from transformers.dynamic_module_utils import get_imports, get_relative_import_files

ROOT = Path(__file__).resolve().parents[1]
# torch, transformers and what transformers itself requires (pip show transformers).
ALLOWED = {"torch", "transformers", "huggingface_hub", "safetensors", "tokenizers", "numpy", "packaging", "yaml",
           "regex", "tqdm", "filelock", "typer"}


def shipped_files() -> list[Path]:
    """What `save_pretrained` copies next to a model: the config's and model's modules and, recursively, every module
    they import relatively (the pipeline module through modeling_arena)."""
    modeling = ROOT / "modeling_arena.py"
    files = {modeling, ROOT / "configuration_arena.py"} | {Path(p) for p in get_relative_import_files(str(modeling))}
    return sorted(files)


def test_the_shipped_files_are_the_remote_code_modules():
    assert [p.name for p in shipped_files()] == ["configuration_arena.py", "encoding_arena.py", "modeling_arena.py",
                                                 "pipeline_arena.py", "precision_arena.py"]


def test_no_shipped_file_needs_a_package_beyond_torch_and_transformers():
    shipped = {p.stem for p in shipped_files()}
    for path in shipped_files():
        needed = set(get_imports(str(path))) - shipped - set(sys.stdlib_module_names)
        assert needed <= ALLOWED, f"{path.name} makes transformers demand {sorted(needed - ALLOWED)}"


def test_the_check_would_see_an_optional_import_outside_a_try_block(tmp_path):
    """The check above can fail: an onnxruntime import in a function body is seen, one inside try/except is not."""
    seen = tmp_path / "seen.py"
    seen.write_text("def export():\n    import onnxruntime\n")
    hidden = tmp_path / "hidden.py"
    hidden.write_text("def export():\n    try:\n        import onnxruntime\n    except ImportError:\n        pass\n")
    assert get_imports(str(seen)) == ["onnxruntime"] and get_imports(str(hidden)) == []
