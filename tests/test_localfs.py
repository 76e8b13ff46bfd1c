"""pipelines/etl/localfs.py: a local-mode Spark writes through NioLocalFileSystem (no chmod
process per file), with the permissions and checksum files Hadoop's own class gives."""

from __future__ import annotations

import os
import stat

from pipelines.etl import localfs


def test_the_local_session_writes_through_the_nio_file_system(spark, tmp_path):
    jvm_fs = spark._jvm.org.apache.hadoop.fs.FileSystem.getLocal(spark._jsc.hadoopConfiguration())
    assert jvm_fs.getClass().getName() == localfs.CLASS
    out = tmp_path / "t"
    spark.range(6).selectExpr("id", "cast(id % 3 as string) as k").write.partitionBy("k").parquet(str(out))
    umask = os.umask(0)
    os.umask(umask)
    part = out / "k=1"
    files = [p for p in part.iterdir() if p.name.startswith("part-")]
    assert files and all(stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask for p in files)
    assert stat.S_IMODE(part.stat().st_mode) == 0o777 & ~umask
    assert {f".{p.name}.crc" for p in files} <= {p.name for p in part.iterdir()}  # checksums kept
    assert spark.read.parquet(str(out)).count() == 6


def test_only_a_local_master_gets_it_and_without_javac_spark_keeps_hadoops(monkeypatch, tmp_path, capsys):
    assert localfs.spark_settings("spark://host:7077") == {}
    assert localfs.spark_settings("local[2]")["spark.hadoop.fs.file.impl"] == localfs.CLASS
    monkeypatch.setenv("SEQREP_CACHE", str(tmp_path))
    localfs.jar.cache_clear()
    try:
        built = localfs.jar()  # compiled into an empty cache
        assert built is not None and built.parent == tmp_path and built.stat().st_size > 1000
        localfs.jar.cache_clear()
        monkeypatch.setenv("PATH", str(tmp_path))  # a machine without a JDK's javac on its PATH
        assert localfs.spark_settings("local[2]") == {}
        assert "no javac" in capsys.readouterr().err
    finally:
        localfs.jar.cache_clear()
