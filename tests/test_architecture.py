"""The boundary between the library and the training app stays where it is.

``zoo`` is plain PyTorch: it imports neither the training app (``tasks``) nor Lightning or Hydra, and knows
nothing of ``conf/``. Checkpoints are read in one place and their error has one class. No file grows past
what a person reads in one sitting.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "zoo"
TRAINING_SIDE = ("tasks", "lightning", "lightning_fabric", "pytorch_lightning", "hydra", "omegaconf")
MAX_LINES = 400


def _python_files(*paths: Path) -> list[Path]:
    files = []
    for p in paths:
        files += [p] if p.is_file() else sorted(f for f in p.rglob("*.py") if "__pycache__" not in f.parts)
    return files


def _repo_python_files() -> list[Path]:
    """Every Python file of the repository, tests included (hidden folders and build outputs aside)."""
    return [f for f in _python_files(ROOT) if not any(part.startswith(".") or part.endswith(".egg-info")
                                                      for part in f.relative_to(ROOT).parts)]


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in the file: top level, in functions, under ``if TYPE_CHECKING``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def test_zoo_never_imports_the_training_side():
    offending = [f"{path.relative_to(ROOT)}:{line} imports {module}"
                 for path in _python_files(ZOO) for line, module in _imported_modules(path)
                 if module.split(".")[0] in TRAINING_SIDE]
    assert not offending, "zoo/ must stand alone (plain PyTorch): " + "; ".join(offending)


def test_importing_zoo_loads_no_training_side_module():
    # every module of the library, as a user of the installed wheel would import them
    code = ("import pkgutil, sys, zoo\n"
            "for m in pkgutil.walk_packages(zoo.__path__, 'zoo.'):\n"
            "    __import__(m.name)\n"
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({TRAINING_SIDE!r})))\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "[]"


def test_zoo_does_not_know_where_the_configs_live():
    mentions = [f"{p.relative_to(ROOT)}:{i}" for p in sorted(ZOO.rglob("*")) if p.is_file() and p.suffix != ".pyc"
                for i, line in enumerate(p.read_text(errors="replace").splitlines(), 1) if "conf/" in line]
    assert not mentions, f"zoo/ mentions the training app's conf/ folder: {', '.join(mentions)}"


@pytest.mark.parametrize("path", _python_files(ROOT / "zoo", ROOT / "tasks", ROOT / "train.py", ROOT / "benchmarks"),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_no_python_file_is_over_400_lines(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines: split it by concept (at most {MAX_LINES})"


def test_checkpoints_are_read_in_one_place_with_one_error_class():
    loads, classes = [], []
    for path in _repo_python_files():
        tree = ast.parse(path.read_text(), filename=str(path))
        where = path.relative_to(ROOT)
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name == "CheckpointError":
                classes.append(f"{where}:{node.lineno}")
            if where.parts[0] == "tests" or not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr == "load" and isinstance(func.value, ast.Name) \
                    and func.value.id == "torch":
                loads.append(f"{where}:{node.lineno}")
    assert len(loads) == 1, f"torch.load must be called in one place (zoo.checkpoint.read_checkpoint): {loads}"
    assert loads[0].startswith("zoo/checkpoint.py:"), loads
    assert classes == [c for c in classes if c.startswith("zoo/checkpoint.py:")] and len(classes) == 1, classes
