"""Privacy: pseudonymous user ids (the keyed hash, ingest, queries) and the scan that proves an id
is nowhere in a warehouse."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.cli import main
from pipelines.core import privacy
from pipelines.core.errors import ConfigError, UsageError

KEY = "k3y-for-tests-only-0123456789abcdef"
DAYS = [date(2024, 1, 1), date(2024, 1, 2)]


def test_the_pseudonym_is_hmac_sha256_truncated_to_128_bits():
    # RFC 4231, test case 1: HMAC-SHA256(0x0b * 20, "Hi There") = b0344c61d8db3853...
    assert privacy.pseudonym(b"\x0b" * 20, "Hi There") == "b0344c61d8db38535ca8afceaf0bf12b"
    assert privacy.pseudonym(b"\x0b" * 20, "Hi There") != privacy.pseudonym(b"\x0c" * 20, "Hi There")


def test_the_key_comes_from_the_environment_or_a_file_and_must_be_long(tmp_path, monkeypatch):
    monkeypatch.delenv("SEQREP_PSEUDONYM_KEY", raising=False)
    assert privacy.read_key("SEQREP_PSEUDONYM_KEY", None) is None
    key_file = tmp_path / "key"
    key_file.write_text("0123456789abcdef0123\n")
    assert privacy.read_key("SEQREP_PSEUDONYM_KEY", key_file) == b"0123456789abcdef0123"  # the newline is no part of it
    monkeypatch.setenv("SEQREP_PSEUDONYM_KEY", KEY)
    assert privacy.read_key("SEQREP_PSEUDONYM_KEY", key_file) == KEY.encode()  # the environment first
    monkeypatch.setenv("SEQREP_PSEUDONYM_KEY", "short")
    with pytest.raises(ConfigError, match="5 bytes; use at least 16"):
        privacy.read_key("SEQREP_PSEUDONYM_KEY", None)
    monkeypatch.delenv("SEQREP_PSEUDONYM_KEY")
    with pytest.raises(UsageError, match="none was found in the environment variable SEQREP_PSEUDONYM_KEY"):
        privacy.require_key("SEQREP_PSEUDONYM_KEY", None, why="query")


def _log(folder: Path, day: date, rows: list[tuple]) -> None:
    (folder / f"dt={day}").mkdir(parents=True)
    cols = list(zip(*rows))
    pq.write_table(pa.table({"event_id": list(cols[0]), "user_id": list(cols[1]), "item_id": list(cols[2]),
                             "event_type": list(cols[3]), "ts": [int(t) for t in cols[4]]}),
                   folder / f"dt={day}" / "part-0.parquet")


def _config(tmp_path: Path, logs: Path, pseudonymize: bool = True) -> Path:
    path = tmp_path / "seqrep.yaml"
    path.write_text(f"""
warehouse: {tmp_path / 'wh'}
spark: {{shuffle_partitions: 2}}
ingest: {{source: parquet, input: "{logs}/dt={{date}}", columns: {{event_id: event_id}}}}
privacy: {{pseudonymize: {str(pseudonymize).lower()}}}
nightly: {{methods: [sasrec], warm_epochs: 1}}
methods:
  sasrec: {{model: {{dim: 8, max_len: 10, num_layers: 1, num_heads: 1}}, train: {{epochs: 1, batch_size: 64}}}}
""")
    return path


def _people(n: int = 40) -> list[str]:
    return [f"person{i:03d}@example.com" for i in range(n)]


def _rows(day: date, people: list[str]) -> list[tuple]:
    """Five events per person on ``day``, with event ids that embed the person's id (as many logs'
    do), plus a row whose user id is only blanks (clean's ``null_id``)."""
    t0 = int(__import__("datetime").datetime(day.year, day.month, day.day, 8).timestamp())
    rows = [(f"{p}-{day}-{j}", p, f"item{(i * 7 + j * 3 + day.day) % 25}", "view", t0 + 60 * j + i)
            for i, p in enumerate(people) for j in range(5)]
    return rows + [(f"blank-{day}", "  ", "item1", "view", t0)]


@pytest.fixture(scope="module")
def pseudonymous(tmp_path_factory, spark):
    """Two days of a crafted log through ``seqrep backfill`` (ingest, ETL and gates,
    a SASRec trained, inferred, published, the report) with ``privacy.pseudonymize`` on."""
    tmp = tmp_path_factory.mktemp("pseudo")
    logs, people = tmp / "logs", _people()
    for day in DAYS:
        _log(logs, day, _rows(day, people))
    config = _config(tmp, logs)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEQREP_PSEUDONYM_KEY", KEY)
        assert main(["backfill", "--from", str(DAYS[0]), "--to", str(DAYS[-1]), "--config", str(config)]) == 0
    return tmp / "wh", config, people


def test_no_plain_user_id_and_no_key_is_anywhere_in_a_pseudonymous_warehouse(pseudonymous):
    from pipelines.gates.erasure import scan

    wh, _, people = pseudonymous
    stored = pq.read_table(wh / f"sequences/dt={DAYS[-1]}").column("user_id").to_pylist()
    assert sorted(stored) == sorted(privacy.pseudonym(KEY.encode(), p) for p in people)
    for person in people:  # every table, manifest, gate result, model config and report
        assert scan(wh, {"id": person}) == [], person
    assert scan(wh, {"key": KEY}) == []
    record = json.loads((wh / privacy.RECORD).read_text())
    assert record["key_check"] == privacy.key_check(KEY.encode()) and KEY not in json.dumps(record)
    # the blank id stays blank, and clean quarantines it as before
    quarantine = pq.read_table(wh / f"quarantine/events/dt={DAYS[0]}").to_pydict()
    assert quarantine["reason"] == ["null_id"] and quarantine["user_id"] == ["  "]
    # the scan does find what is there: a pseudonym, in the tables
    assert {h["file"].split("/")[0] for h in scan(wh, {"pseudonym": stored[0]})} >= {
        "raw", "clean", "sessions", "sequences", "embeddings"}


def test_queries_take_the_plain_id_with_the_key_and_fail_clearly_without(pseudonymous, monkeypatch, capsys):
    wh, config, people = pseudonymous
    argv = ["query", "recommend", people[3], "--method", "sasrec", "--k", "3", "--config", str(config), "--json"]
    monkeypatch.setenv("SEQREP_PSEUDONYM_KEY", KEY)
    capsys.readouterr()
    assert main(argv) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3
    monkeypatch.delenv("SEQREP_PSEUDONYM_KEY")
    assert main(argv) == 2
    assert "pseudonymized with a secret key, and none was found in the environment variable SEQREP_PSEUDONYM_KEY" \
        in capsys.readouterr().err
    monkeypatch.setenv("SEQREP_PSEUDONYM_KEY", "another-key-of-enough-length")
    assert main(argv) == 2
    assert "not the one this warehouse's ids were made with" in capsys.readouterr().err


def test_pseudonyms_and_plain_ids_never_mix_in_one_warehouse(pseudonymous, tmp_path, monkeypatch, capsys):
    wh, _, people = pseudonymous
    logs = tmp_path / "logs"
    _log(logs, date(2024, 1, 3), _rows(date(2024, 1, 3), people))
    plain = _config(tmp_path, logs, pseudonymize=False)
    argv = ["ingest", "--date", "2024-01-03", "--config", str(plain), "--warehouse", str(wh)]
    assert main(argv) == 2
    assert "stores pseudonymous user ids" in capsys.readouterr().err
    # and the other way: a plain warehouse refuses a pseudonymous ingest
    plain_wh = tmp_path / "plain"
    assert main([*argv[:-1], str(plain_wh)]) == 0
    monkeypatch.setenv("SEQREP_PSEUDONYM_KEY", KEY)
    assert main(["ingest", "--date", "2024-01-03", "--config", str(_config(tmp_path, logs)),
                 "--warehouse", str(plain_wh)]) == 2
    assert "already holds plain user ids" in capsys.readouterr().err


def test_retention_drops_exactly_the_partitions_past_each_window(pseudonymous, tmp_path, capsys):
    import shutil

    src, config, _ = pseudonymous
    wh = shutil.copytree(src, tmp_path / "wh")
    cfg = tmp_path / "retention.yaml"
    cfg.write_text(config.read_text() + "retention: {raw_days: 1, sessions_days: 2, embeddings_days: 1, reports_days: 1}\n")
    common = ["--warehouse", str(wh), "--config", str(cfg)]
    before = {p.relative_to(wh) for p in wh.rglob("dt=*") if p.is_dir()}
    assert main(["retention", "--date", str(DAYS[-1]), *common]) == 0
    after = {p.relative_to(wh) for p in wh.rglob("dt=*") if p.is_dir()}
    gone = {str(p) for p in before - after}
    old = f"dt={DAYS[0]}"
    embeddings = {str(p) for p in before if p.parts[0] == "embeddings" and p.name == old}
    assert len(embeddings) >= 3  # users, items and index of each method published on day 1
    assert gone == {"raw/events/source=parquet/" + old, "reports/" + old, *embeddings}, gone
    assert (wh / f"sessions/{old}").is_dir() and (wh / f"vocab/users/{old}").is_dir()  # a 2-day window; vocabularies stay
    record = json.loads((wh / f"_manifests/stage=retention/dt={DAYS[-1]}.json").read_text())
    assert record["dropped"]["raw"]["partitions"] == 1 and record["dropped"]["embeddings"]["partitions"] == len(embeddings)
    assert main(["doctor", *common]) == 0  # the manifests of dropped days are no finding
    assert main(["report", "--date", str(DAYS[-1]), *common]) == 0
    assert "Retention" in (wh / f"reports/dt={DAYS[-1]}/index.html").read_text()
    # run again: nothing past its window; a window shorter than clean's look-back is refused
    capsys.readouterr()
    assert main(["retention", "--date", str(DAYS[-1]), *common]) == 0
    assert "nothing past its window" in capsys.readouterr().out
    cfg.write_text(config.read_text() + "retention: {clean_days: 1}\n")
    assert main(["retention", "--date", str(DAYS[-1]), *common]) == 2
