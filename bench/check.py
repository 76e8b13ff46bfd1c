"""Check that bench/README.md's tables are what their raw results give.

For every ``bench/results/<name>.json`` (``bench/results.py``), the table is rendered again from
the recorded figures by the script that made it, and compared with the table stored in the file
and with the table that follows ``<!-- results: bench/results/<name>.json -->`` in
``bench/README.md``. Every marker in the README must name a results file that exists.

    python bench/check.py            # exit 1 and a diff on any difference
"""

from __future__ import annotations

import difflib
import importlib
import json
import re
import sys
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
MARKER = re.compile(r"<!-- results: (bench/results/[\w.-]+\.json) -->")


def renderers() -> dict[str, Callable[[dict], str]]:
    """The script that renders each kind of results file: by the command's script. Each imports its
    script when called (this script's folder is on the path), so only the scripts recorded are imported."""
    def train_table(figures: dict) -> str:
        import train

        return train.table(train.results_of(figures), figures["base"], figures["tail"], figures.get("short"))

    def incremental_table(figures: dict) -> str:
        import incremental
        from datetime import date

        return incremental.table(figures["rows"], [date.fromisoformat(d) for d in figures["days"]])

    def table_of(module: str) -> Callable[[dict], str]:
        """The script's own ``table(figures)``."""
        return lambda figures: importlib.import_module(module).table(figures)

    return {"bench/train.py": train_table, "bench/incremental.py": incremental_table,
            **{f"bench/{m}.py": table_of(m) for m in ("multitask", "etl", "etl_days", "gates", "infer", "peer_recbole", "task_cost",
                                                               "cross_domain", "erasure", "recent", "stream", "etl_cluster", "scheduler")}}


def readme_tables(text: str) -> dict[str, str]:
    """Marker -> the markdown table right after it (its consecutive ``|`` lines)."""
    out = {}
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = MARKER.search(line)
        if m:
            rows = []
            for row in lines[i + 1:]:
                if not row.startswith("|"):
                    if rows:
                        break
                    continue
                rows.append(row)
            out[m.group(1)] = "\n".join(rows)
    return out


def _diff(a: str, b: str, a_name: str, b_name: str) -> str:
    return "\n".join(difflib.unified_diff(a.splitlines(), b.splitlines(), a_name, b_name, lineterm=""))


def check(results_dir: Path = HERE / "results", readme: Path = README) -> list[str]:
    """The problems found; empty when every table is its results' table."""
    problems = []
    tables = readme_tables(readme.read_text())
    render = renderers()
    files = sorted(results_dir.glob("*.json"))
    for path in files:
        doc = json.loads(path.read_text())
        key = f"bench/results/{path.name}"
        script = doc["command"].split()[1]
        if script not in render:
            problems.append(f"{key}: no renderer for {script}")
            continue
        again = render[script](doc["figures"])
        if again != doc["table"]:
            problems.append(f"{key}: its figures give another table than the one recorded\n"
                            + _diff(doc["table"], again, "recorded", "rendered"))
        if key not in tables:
            problems.append(f"{key}: no table in {readme.name} follows a marker <!-- results: {key} -->")
        elif tables[key] != again:
            problems.append(f"{key}: the table in {readme.name} is not the one its figures give\n"
                            + _diff(tables[key], again, readme.name, "rendered"))
    for key in sorted(set(tables) - {f"bench/results/{p.name}" for p in files}):
        problems.append(f"{readme.name} names {key}, which does not exist")
    return problems


def main() -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=HERE / "results", help="folder of raw results (bench/results)")
    ap.add_argument("--readme", type=Path, default=README, help="the tables (bench/README.md)")
    args = ap.parse_args()
    problems = check(args.results, args.readme)
    for p in problems:
        print(p, file=sys.stderr)
    n = len(list(args.results.glob("*.json")))
    print(f"bench/check.py: {n} results file(s), {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
