"""A local file system for Spark without a ``chmod`` process per file (local masters only).

Without Hadoop's native library (pip's pyspark has none), Hadoop's ``RawLocalFileSystem`` sets the
permissions of every file and folder it creates by starting a ``chmod`` process. A range run writes
a file per day, table and task (``etl --all`` over 4,000 days: tens of thousands of files, each
with its checksum file), so it spent most of its time starting processes: 40,000 rows over 2,000
daily partitions (4,000 files) written and read back in 47.5 s, against 16.8 s with the
permissions set in-process (second of two runs each, ``local[2]``, this 2-core machine).

``NioLocalFileSystem.java`` (beside this module) is Hadoop's ``LocalFileSystem``, checksums
included, whose raw layer sets the same mode bits through ``java.nio``. It is compiled on first
use with the JDK's ``javac`` against the Hadoop jar that pyspark ships, into a cache folder keyed
by both (``$SEQREP_CACHE``, default ``~/.cache/seqrep``), and given to a local-mode driver
(:func:`spark_settings`). Without ``javac`` (a JRE-only image) Spark keeps Hadoop's own class, with
one warning. A cluster's executors never get it: they run elsewhere, and a cluster warehouse is
on HDFS or object storage, where this does not apply.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path

SOURCE = Path(__file__).with_name("NioLocalFileSystem.java")
CLASS = "seqrep.fs.NioLocalFileSystem"


def _hadoop_jar() -> Path | None:
    import pyspark

    jars = sorted((Path(pyspark.__file__).parent / "jars").glob("hadoop-client-api-*.jar"))
    return jars[-1] if jars else None


def cache_dir() -> Path:
    return Path(os.environ.get("SEQREP_CACHE") or Path.home() / ".cache" / "seqrep")


@cache
def jar() -> Path | None:
    """The compiled jar (built once per source and Hadoop version), or None without ``javac``."""
    hadoop, javac = _hadoop_jar(), shutil.which("javac")
    if hadoop is None or javac is None:
        print("seqrep: no javac (or no Hadoop jar in pyspark): Spark keeps Hadoop's local file system, "
              "which starts a chmod process per file written", file=sys.stderr)
        return None
    key = hashlib.sha256(SOURCE.read_bytes() + hadoop.name.encode()).hexdigest()[:12]
    out = cache_dir() / f"seqrep-localfs-{key}.jar"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        classes, built = Path(tmp) / "classes", Path(tmp) / out.name
        for cmd in ([javac, "-nowarn", "-d", str(classes), "-cp", str(hadoop), str(SOURCE)],
                    [shutil.which("jar") or "jar", "cf", str(built), "-C", str(classes), "."]):
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"seqrep: building {out.name} failed, Spark keeps Hadoop's local file system: "
                      f"{' '.join(cmd[:2])}: {done.stderr.strip()[-500:]}", file=sys.stderr)
                return None
        os.replace(built, out)  # concurrent builders each move a whole jar into place
    return out


def spark_settings(master: str) -> dict[str, str]:
    """The driver settings that install the class, for a local master; none otherwise."""
    if not master.startswith("local"):
        return {}
    path = jar()
    return {"spark.driver.extraClassPath": str(path), "spark.hadoop.fs.file.impl": CLASS} if path else {}


if __name__ == "__main__":  # `python -m pipelines.etl.localfs`: build it now (make install does)
    print(jar() or "not built")
