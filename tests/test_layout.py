"""The warehouse's one owner of its layout (names, common reads, atomic writes, records read as
data) and the one place errors become exit codes; no Spark, no torch."""

from __future__ import annotations

from datetime import date

import pytest

from pipelines.core.errors import (AccountingError, ConfigError, GateFailed, InputError, UsageError,
                                   WarehouseError)
from pipelines.core.warehouse import Warehouse

D = date(2024, 1, 3)


def test_write_folder_is_all_or_nothing(tmp_path):
    wh = Warehouse(tmp_path / "wh")
    target = wh.partition("t", D)
    wh.write_folder(target, lambda staged: (staged / "part-0").write_text("old"))

    def half_then_fail(staged):
        (staged / "part-0").write_text("new")
        raise RuntimeError("killed midway")

    with pytest.raises(RuntimeError, match="midway"):
        wh.write_folder(target, half_then_fail)
    assert [p.name for p in target.iterdir()] == ["part-0"] and (target / "part-0").read_text() == "old"
    assert not list((wh.root / "_staging").iterdir())  # nothing left behind
    assert wh.write_folder(target, lambda staged: (staged / "part-1").write_text("new") and "done") == "done"
    assert [p.name for p in target.iterdir()] == ["part-1"]


def test_write_file_replaces_in_one_rename_or_not_at_all(tmp_path):
    wh = Warehouse(tmp_path / "wh")
    path = wh.manifest_path("clean", f"dt={D}")
    wh.write_json(path, {"rows": 1})

    def fail(tmp):
        tmp.write_text("{half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        wh.write_file(path, fail)
    assert wh.read_manifest("clean", f"dt={D}") == {"rows": 1}
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_names_of_models_and_records_stay_inside_the_warehouse(tmp_path):
    wh = Warehouse(tmp_path / "wh")
    assert wh.model_folder("sasrec", "2024-01-03-abcd1234") == wh.root / "models/sasrec/2024-01-03-abcd1234"
    assert wh.model_workdir("sasrec", "v").name == "v.partial"
    for typed in ("../../../elsewhere", "../gru4rec/v", ".partial", ""):  # a --version typed by a user
        with pytest.raises(WarehouseError, match="not a version name"):
            wh.model_folder("sasrec", typed)
    with pytest.raises(WarehouseError, match="outside the warehouse"):
        wh.table("models/../../elsewhere")
    assert wh.embeddings("users", "sasrec", D, "v1") == wh.root / "embeddings/users/model=sasrec/dt=2024-01-03/version=v1"
    assert wh.index_folder("sasrec", D, "v1") == wh.root / "embeddings/index/model=sasrec/dt=2024-01-03/version=v1"
    with pytest.raises(ValueError, match="users or items"):
        wh.embeddings("vectors", "sasrec", D, "v1")
    assert wh.gate_result_path("clean", [D, date(2024, 1, 5)]).name == "dt=2024-01-03..2024-01-05.json"


def test_publish_records_and_gate_results_are_read_as_data(tmp_path):
    wh = Warehouse(tmp_path / "wh")
    assert wh.last_published("sasrec", D) is None and wh.published_methods() == []
    for day, version in ((date(2024, 1, 1), "a"), (date(2024, 1, 2), "b"), (D, "c")):
        wh.write_publish_record("sasrec", day, {"model_version": version})
    assert wh.published_days("sasrec") == [date(2024, 1, 1), date(2024, 1, 2), D]
    assert wh.last_published("sasrec", D)["model_version"] == "b"  # strictly before the day
    assert wh.published_methods() == ["sasrec"]
    assert wh.read_gate_result("embeddings", D, "model=sasrec") is None
    wh.write_gate_result("embeddings", [D], {"passed": False, "outcomes": []}, "# failed\n", "model=sasrec")
    assert wh.read_gate_result("embeddings", D, "model=sasrec")["passed"] is False
    assert wh.gate_result_path("embeddings", D, "model=sasrec").with_suffix(".md").read_text() == "# failed\n"


def test_required_partitions_fail_with_one_message_naming_table_days_and_what_to_run(tmp_path):
    wh = Warehouse(tmp_path / "wh")
    wh.partition("sessions", D).mkdir(parents=True)
    assert wh.require_partitions("sessions", [D], who="graphs", hint="run sessionize first") == [
        str(wh.partition("sessions", D))]
    with pytest.raises(WarehouseError, match=r"graphs: sessions has no partition for \['2024-01-04'\]; run sessionize"):
        wh.require_partitions("sessions", [D, date(2024, 1, 4)], who="graphs", hint="run sessionize first")
    assert wh.require_upto("sessions", date(2024, 1, 9), who="x") == [D]
    with pytest.raises(KeyError, match="no sessions partitions up to 2024-01-02"):
        wh.require_upto("sessions", date(2024, 1, 2), who="x", error=KeyError)


@pytest.mark.parametrize("error,code", [
    (GateFailed("gate clean: FAILED"), 1), (UsageError("--from needs --to"), 2), (InputError("file x: column y"), 2),
    (ConfigError("c.yaml: key"), 2), (WarehouseError("no sequences"), 2), (AccountingError("rows in != out"), 4),
    (FileNotFoundError("x"), 2), (RuntimeError("unexpected"), None),
])
def test_every_error_kind_has_its_exit_code(error, code):
    from pipelines.cli import exit_code

    got, message = exit_code(error)
    assert got == code
    if code == 4:
        assert "a bug in seqrep" in message


def test_models_errors_are_usage_errors_and_the_cli_says_so(tmp_path, capsys):
    from models.errors import DataError, MethodError
    from pipelines.cli import exit_code, main

    assert exit_code(MethodError("unknown method"))[0] == 2 and exit_code(DataError("no text"))[0] == 2
    assert main(["train", "--method", "no_such_method", "--date", "2024-01-01", "--warehouse", str(tmp_path)]) == 2
    assert "seqrep train: error: unknown method 'no_such_method'" in capsys.readouterr().err
    assert main(["summary", "--warehouse", str(tmp_path)]) == 2
    assert "no clean events" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["--config", "c.yaml", "--warehouse", "w", "etl", "--all"],  # before the command's name
    ["etl", "--all", "--config", "c.yaml", "--warehouse", "w"],  # after it
])
def test_config_and_warehouse_are_read_before_or_after_the_command(argv):
    """A command's parser must not write its own defaults over what the main parser read (argparse
    does, for options a subparser also declares): ``seqrep --config X ingest`` once ingested with
    the default source."""
    from pipelines.cli import parser

    args = parser().parse_args(argv)
    assert (args.config, args.warehouse) == ("c.yaml", "w")
    assert parser().parse_args(["etl", "--all"]).config is None
