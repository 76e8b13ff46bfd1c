"""The README's gate example: ml-100k through the ETL, one day's clean events corrupted by hand
(its first two rows get an event type the schema does not have, its first three rows are
written twice), then the clean gate on that day.

    python docs/examples/gate_failure.py path/to/ml-100k [--warehouse wh-ml]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

DAY = "1997-12-30"


def seqrep(*args: str) -> int:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args]).returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ml100k", help="the ml-100k folder (u.data, u.item)")
    ap.add_argument("--warehouse", default="wh-ml")
    args = ap.parse_args()
    config = str(Path(__file__).resolve().parents[2] / "configs" / "movielens.yaml")
    if not Path(args.warehouse, "clean/events").is_dir():
        assert seqrep("ingest", "--source", "movielens", "--input", args.ml100k, "--warehouse", args.warehouse) == 0
        assert seqrep("etl", "--all", "--no-gates", "--warehouse", args.warehouse, "--config", config) == 0
    else:  # a second try: the day's clean events as the ETL writes them, before corrupting them again
        assert seqrep("etl", "--date", DAY, "--stages", "clean", "--no-gates",
                      "--warehouse", args.warehouse, "--config", config) == 0
    part = next(Path(args.warehouse, f"clean/events/dt={DAY}").glob("*.parquet"))
    table = pq.read_table(part)
    kinds = table.column("event_type").to_pylist()
    kinds[0] = kinds[1] = "like"  # two events of a type the canonical schema does not have
    table = table.set_column(table.schema.get_field_index("event_type"), "event_type", pa.array(kinds))
    table = pa.concat_tables([table, table.take(pc.indices_nonzero(pc.less(pa.array(range(len(table))), 3)))])
    pq.write_table(table, part)  # and three rows twice: the partition no longer matches its manifest
    part.with_name(f".{part.name}.crc").unlink(missing_ok=True)  # Hadoop's checksum of the old bytes
    return seqrep("validate", "--stage", "clean", "--date", DAY, "--warehouse", args.warehouse)


if __name__ == "__main__":
    sys.exit(main())
