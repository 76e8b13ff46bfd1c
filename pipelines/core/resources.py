"""Files that ship with the package: the SQL of ``sql/``, the configs of ``configs/`` and the DAG
of ``dags/``.

In the repository those folders sit at the top level, where a reader finds them; the package
holds links to them (``pipelines/sql`` -> ``../sql``, and so on), which a wheel build resolves
into copies, so ``pip install .`` (not editable) gives a ``seqrep`` that works from any folder.
"""

from __future__ import annotations

from pathlib import Path

#: The installed ``pipelines`` package.
PACKAGE_DIR = Path(__file__).resolve().parent.parent
SQL_DIR = PACKAGE_DIR / "sql"
CONFIGS_DIR = PACKAGE_DIR / "configs"
DAGS_DIR = PACKAGE_DIR / "dags"
