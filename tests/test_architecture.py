"""The architecture, checked: the import contracts of pyproject.toml (import-linter) on the code and
on copies with a forbidden import planted, a method registered from this module and trained
through ``seqrep train``, what the wheel ships, and the length of functions."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from torch import nn

from models.base import SequenceModel

ROOT = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).with_name("lint-imports")


def lint(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the packages under ``root`` with its pyproject.toml (no cache: a copy
    with a planted import must be analysed afresh)."""
    return subprocess.run([str(LINT), "--config", "pyproject.toml", "--no-cache"], cwd=root, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "COLUMNS": "250"})  # no wrapped names


def test_the_code_keeps_every_import_contract():
    out = lint(ROOT)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "4 kept, 0 broken" in out.stdout


@pytest.mark.parametrize("module,line,broken", [
    ("models/base.py", "import pipelines.core.config", "models is torch only"),
    ("models/data.py", "import duckdb", "models is torch only"),
    ("pipelines/etl/clean.py", "from pipelines.nightly import steps", "pipelines is layered"),
    ("pipelines/serving/query.py", "from pipelines.modeling import train", "pipelines is layered"),
    ("pipelines/core/config.py", "import torch", "the kernel imports no other layer"),
    ("pipelines/core/errors.py", "from pipelines.core import warehouse", "no import cycles"),
])
def test_a_forbidden_import_breaks_its_contract(tmp_path, module, line, broken):
    """The contracts can fail: a copy of the packages with one forbidden import planted breaks the
    contract that names it (an upward import is also a cycle; core.errors <-> core.warehouse is one)."""
    for name in ("pipelines", "models"):
        shutil.copytree(ROOT / name, tmp_path / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    path = tmp_path / module
    path.write_text(path.read_text() + f"\n{line}  # planted by the test\n")
    out = lint(tmp_path)
    assert out.returncode == 1, out.stdout[-3000:]
    verdicts = {ln.rsplit(" ", 1)[0].strip(): ln.rsplit(" ", 1)[1] for ln in out.stdout.splitlines()
                if ln.endswith((" KEPT", " BROKEN"))}
    assert len(verdicts) == 4 and verdicts[next(n for n in verdicts if n.startswith(broken))] == "BROKEN", out.stdout
    assert sum(v == "BROKEN" for v in verdicts.values()) <= 2, verdicts


def test_canonical_event_types_are_the_models_behaviors():
    """MMoE's behavior codes are a trained model's contract; they must name the pipeline's types."""
    from models.multitask import BEHAVIORS
    from pipelines.core.config import EVENT_TYPES

    assert tuple(BEHAVIORS) == tuple(EVENT_TYPES)


# -- a method from outside the package: one class plus one registry call -----------------------------

class ItemBag(SequenceModel):
    """Bag of items: a user is the mean of their history's item vectors (this test module's own method)."""

    name = "test_item_bag"
    family = "test"

    def __init__(self, n_items, params, n_users=0):
        super().__init__(n_items, params, n_users)
        self.item = nn.Embedding(n_items + 1, params.dim, padding_idx=0)

    def hidden(self, items):
        e = self.item(items)  # padding rows are zeros; each position averages the prefix up to it
        return e.cumsum(1) / (items > 0).cumsum(1).clamp(min=1).unsqueeze(-1)

    def item_embeddings(self):
        return self.item.weight


@pytest.fixture
def bag_method():
    from models import registry

    registry.register(ItemBag)  # the one registry line, from outside the package
    yield ItemBag
    for table in (registry.METHODS, registry.FAMILIES, registry._CONFIG_FILES):
        table.pop(ItemBag.name, None)


def test_a_method_registered_from_outside_the_package_trains_through_seqrep_train(
        bag_method, movielens_wh, tmp_path, capsys):
    """``register(cls)`` from this module, no edit of the package: ``seqrep methods`` lists it and
    ``seqrep train`` trains, evaluates and stores it like the packaged methods."""
    import pyarrow.parquet as pq

    from pipelines.cli import main

    wh = tmp_path / "wh"
    shutil.copytree(movielens_wh, wh, ignore=shutil.ignore_patterns("models", "metrics", "embeddings", "_gates"))
    assert main(["methods"]) == 0
    assert "test_item_bag" in capsys.readouterr().out
    assert main(["train", "--method", "test_item_bag", "--warehouse", str(wh), "--set", "train.epochs=2",
                 "--set", "model.dim=16", "--set", "train.batch_size=256", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    test = {(r["metric"], r["k"]): r["value"] for r in rows if r["split"] == "test"}
    assert rows and test[("hr", 10)] > 0  # it ranked ml-100k's test items, better than nothing
    folder = next((wh / "models" / "test_item_bag").glob("1998-04-22-*"))
    assert (folder / "model.safetensors").is_file() and not list(folder.parent.glob("*.partial"))
    assert pq.read_table(next((wh / "metrics" / "method=test_item_bag").rglob("*.parquet"))).num_rows == len(rows)


# -- packaging -------------------------------------------------------------------------------------

def test_the_wheel_ships_sql_configs_and_the_dag(tmp_path):
    """``pip wheel .``: the SQL, the dataset and method configs and the DAG are package data, so a
    non-editable install works from any folder (``make wheel-check`` installs it and runs a day)."""
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    names = set(zipfile.ZipFile(next(tmp_path.glob("seqrep-*.whl"))).namelist())
    for folder, suffix in (("sql", ".sql"), ("configs", ".yaml"), ("dags", ".py")):
        expected = {f"pipelines/{folder}/{p.name}" for p in (ROOT / folder).glob(f"*{suffix}")}
        assert expected and expected <= names, (folder, sorted(expected - names))
    assert {f"models/configs/{p.name}" for p in (ROOT / "models" / "configs").glob("*.yaml")} <= names
    assert not [n for n in names if n.startswith(("tests/", "bench/"))]


# -- function length -------------------------------------------------------------------------------

#: Functions allowed past the limit: declarative tables, with the reason.
LONG_FUNCTIONS: dict[str, str] = {}
MAX_LINES = 60


def test_no_function_is_longer_than_the_limit():
    long = []
    for folder in ("pipelines", "models", "dags", "bench"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    n = node.end_lineno - node.lineno + 1
                    where = f"{path.relative_to(ROOT)}:{node.name}"
                    if n > MAX_LINES and where not in LONG_FUNCTIONS:
                        long.append(f"{where} ({n} lines)")
    assert not long, long
