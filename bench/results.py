"""Raw benchmark results: what a bench script measured, kept beside the tables made from it.

``record(name, figures, table)`` writes ``bench/results/<name>.json``: the command that ran, the
code version (commit, and whether the tree had uncommitted changes), the machine (CPU, cores,
memory, Python, torch and its threads, the GPU if any), the date, the figures as data and the
markdown table printed from them. ``bench/check.py`` renders every table again from its figures
and compares it with the file and with ``bench/README.md``, where each table follows a line
``<!-- results: bench/results/<name>.json -->``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def code_version() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    return {"commit": git("rev-parse", "HEAD") or None, "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in _lines("/proc/cpuinfo") if line.startswith("model name")), None)
    mem_kb = next((int(line.split()[1]) for line in _lines("/proc/meminfo") if line.startswith("MemTotal")), 0)
    facts: dict[str, Any] = {"cpu": cpu or platform.processor(), "cores": os.cpu_count(),
                             "memory_gib": round(mem_kb / 2**20, 1), "python": platform.python_version(),
                             "platform": platform.platform()}
    try:
        import torch

        facts.update(torch=torch.__version__, torch_threads=torch.get_num_threads(),
                     gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
    except ImportError:
        pass
    return facts


def _lines(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def record(name: str, figures: dict[str, Any], table: str, argv: list[str] | None = None) -> Path:
    """Write ``bench/results/<name>.json`` (module docstring); returns its path."""
    argv = sys.argv if argv is None else argv
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    doc = {"name": name, "command": " ".join(["python", _relative(argv[0]), *argv[1:]]), "code": code_version(),
           "machine": machine(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "figures": figures, "table": table}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(path)
    print(f"[bench] raw results: {path.relative_to(ROOT)}", flush=True)
    return path


def _relative(script: str) -> str:
    try:
        return str(Path(script).resolve().relative_to(ROOT))
    except ValueError:
        return script
