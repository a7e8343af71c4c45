"""import_runs: files, folders and standard input in, the same runs as the webhook would store."""

import gc
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from runs import importer
from runs.models import Delivery, Project, RejectedDelivery, Run
from tests.conftest import documented_body, example_bytes, newer_body
from tests.recount import counter_mismatches

pytestmark = pytest.mark.django_db
MANAGE = Path(__file__).resolve().parent.parent / "manage.py"


def run_import(*args, stdin: bytes | None = None) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    extra = {"stdin": io.BytesIO(stdin)} if stdin is not None else {}
    call_command("import_runs", *[str(a) for a in args], stdout=out, stderr=err, **extra)
    return out.getvalue(), err.getvalue()


def jsonl(path: Path, bodies: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((b if isinstance(b, str) else json.dumps(b)) + "\n" for b in bodies))
    return path


def test_a_folder_of_both_shapes_imports_recursively(tmp_path):
    s3 = tmp_path / "bucket" / "prefix" / "2026" / "11"
    s3.mkdir(parents=True)
    (s3 / "a.json").write_bytes(example_bytes("completed.json"))
    (s3 / "b.json").write_bytes(example_bytes("newer-failed.json"))
    (tmp_path / "bucket" / "notes.txt").write_text("not a body")
    jsonl(tmp_path / "bucket" / "test-job.jsonl", [newer_body("n-1"), documented_body("d-1", status="failed")])
    nested_array = tmp_path / "bucket" / "deep" / "er" / "runs.json"
    nested_array.parent.mkdir(parents=True)
    text = json.dumps([newer_body("n-2"), documented_body("d-2")], indent=2)
    nested_array.write_text(text)
    second_element_line = [i for i, line in enumerate(text.split("\n"), 1) if line == "  {"][1]

    out, err = run_import(tmp_path / "bucket")

    assert "6 new, 0 updated, 0 duplicates, 0 stale, 0 rejected (4 files)" in out
    assert err == ""
    assert set(Run.objects.values_list("run_id", flat=True)) == {
        "0b6f4c1e-5d2a-4a39-9f1e-2c8d7a10e001", "0b6f4c1e-5d2a-4a39-9f1e-2c8d7a10e004",
        "n-1", "n-2", "d-1", "d-2",
    }  # fmt: skip
    assert Run.objects.get(run_id="0b6f4c1e-5d2a-4a39-9f1e-2c8d7a10e004").error_code == "script-timeout"
    assert Run.objects.get(run_id="d-1").status == "failed"
    sources = set(Delivery.objects.values_list("source", flat=True))
    assert str(s3 / "a.json") in sources  # a file holding one body is named by the file
    assert f"{tmp_path}/bucket/test-job.jsonl:2" in sources
    assert f"{nested_array}:2" in sources  # array elements by the line they start on
    assert f"{nested_array}:{second_element_line}" in sources
    assert counter_mismatches() == []


def test_a_bad_line_is_reported_quarantined_and_the_rest_imported(tmp_path):
    path = jsonl(
        tmp_path / "runs.jsonl",
        [documented_body("r-1"), '{"apiInfo": {"name": "x", "runId": ', {"no": "apiInfo"}, documented_body("r-4")],
    )

    with pytest.raises(CommandError) as refused:
        run_import(path)

    assert refused.value.returncode == 1
    assert set(Run.objects.values_list("run_id", flat=True)) == {"r-1", "r-4"}
    quarantined = dict(RejectedDelivery.objects.values_list("source", "reason"))
    assert set(quarantined) == {f"{path}:2", f"{path}:3"}
    assert "not valid JSON" in quarantined[f"{path}:2"]
    assert "apiInfo" in quarantined[f"{path}:3"]


def test_refusals_are_printed_with_file_and_line(tmp_path, capsys):
    path = jsonl(tmp_path / "runs.jsonl", [documented_body("r-1"), "[1, 2]", documented_body("r-3")])
    err = io.StringIO()
    with pytest.raises(CommandError, match="1 body was refused"):
        call_command("import_runs", str(path), stdout=io.StringIO(), stderr=err)
    assert f"refused {path}:2: body must be a JSON object, not an array" in err.getvalue()


def test_a_broken_array_keeps_the_elements_before_the_break(tmp_path):
    path = tmp_path / "runs.json"
    good = json.dumps(documented_body("r-1"))
    path.write_text(f"[\n{good},\n{{\"apiInfo\": tru}},\n{json.dumps(documented_body('r-3'))}\n{good}\n]")

    with pytest.raises(CommandError):
        run_import(path)

    # The invalid element is refused on its own; the missing comma then breaks the array.
    assert set(Run.objects.values_list("run_id", flat=True)) == {"r-1", "r-3"}
    assert RejectedDelivery.objects.get().source == f"{path}:3"


def test_importing_the_same_files_again_changes_nothing(tmp_path):
    jsonl(tmp_path / "runs.jsonl", [documented_body(f"r-{i}") for i in range(5)] + ["oops"])
    (tmp_path / "one.json").write_bytes(example_bytes("failed.json"))
    with pytest.raises(CommandError):
        run_import(tmp_path)
    before = (
        list(Run.objects.order_by("id").values()),
        list(Delivery.objects.order_by("id").values("id", "outcome")),
        RejectedDelivery.objects.count(),
        {p.last_received_at for p in Project.objects.all()},
    )

    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command("import_runs", str(tmp_path), stdout=out, stderr=io.StringIO())

    assert "0 new, 0 updated, 6 duplicates" in out.getvalue()
    # Not even a delivery: the bytes are kept already, and a file line brings nothing else.
    assert list(Run.objects.order_by("id").values()) == before[0]
    assert list(Delivery.objects.order_by("id").values("id", "outcome")) == before[1]
    assert {p.last_received_at for p in Project.objects.all()} == before[3]
    assert RejectedDelivery.objects.count() == before[2] == 1  # the bad line is kept once
    assert counter_mismatches() == []


def test_an_import_keeps_a_body_a_webhook_brought_only_once(sink, tmp_path):
    # The sink keeps the sender's retries, each with its own time and headers; an import of the
    # S3 sink's copy of the same body adds nothing, whatever its file is called.
    body = documented_body("r-1")
    assert sink.post(body).status_code == 201
    assert sink.post(body).status_code == 200
    (tmp_path / "r-1.json").write_bytes(json.dumps(body).encode())
    out, _ = run_import(tmp_path)
    assert "0 new, 0 updated, 1 duplicates" in out
    assert list(Delivery.objects.values_list("outcome", "source")) == [("created", "webhook"), ("duplicate", "webhook")]
    assert Run.objects.get().delivery_count == 2


def test_standard_input_is_read_as_jsonl_or_as_an_array():
    lines = (json.dumps(documented_body("s-1")) + "\n" + json.dumps(newer_body("s-2")) + "\n").encode()
    out, _ = run_import("-", stdin=lines)
    assert "2 new" in out
    assert Delivery.objects.get(run__run_id="s-2").source == "stdin:2"

    array = json.dumps([documented_body("s-3"), newer_body("s-4")], indent=1).encode()
    out, _ = run_import("-", stdin=b"  \n" + array)
    assert "2 new" in out
    assert Run.objects.count() == 4


def test_many_bodies_are_stored_in_batches(tmp_path):
    path = jsonl(tmp_path / "runs.jsonl", [documented_body(f"r-{i}", job_run=f"jr-{i % 3}") for i in range(25)])
    out, _ = run_import(path, "--batch-size", "7")
    assert "25 new" in out
    assert Run.objects.count() == 25
    assert counter_mismatches() == []


def test_a_batch_ends_early_when_its_bodies_reach_the_byte_bound(tmp_path, monkeypatch):
    """Results reach 2 MB: a batch of 5,000 of those would hold gigabytes in memory."""
    stored = []
    real = importer._store_batch
    monkeypatch.setattr(importer, "_store_batch", lambda batch, *a: stored.append(len(batch)) or real(batch, *a))
    monkeypatch.setattr(importer, "BATCH_BYTES", 3 * 1024)
    bodies = [documented_body(f"b-{i}", result={"blob": "x" * 1000}) for i in range(10)]
    out, _ = run_import(jsonl(tmp_path / "runs.jsonl", bodies))
    assert "10 new" in out
    assert max(stored) < 10 and sum(stored) == 10
    assert counter_mismatches() == []


def test_a_line_over_the_body_limit_is_refused_without_being_kept(tmp_path, settings):
    settings.MAX_BODY_BYTES = 1024 * 1024
    huge = json.dumps(documented_body("big", result={"blob": "x" * (3 * 1024 * 1024)}))
    path = jsonl(tmp_path / "runs.jsonl", [documented_body("r-1"), huge, documented_body("r-3")])
    err = io.StringIO()
    with pytest.raises(CommandError):
        call_command("import_runs", str(path), stdout=io.StringIO(), stderr=err)
    assert f"{path}:2: line is longer than the 1 MB body limit" in err.getvalue()
    assert set(Run.objects.values_list("run_id", flat=True)) == {"r-1", "r-3"}
    assert not RejectedDelivery.objects.exists()  # as the webhook answers 413 without keeping it


def test_a_missing_path_is_a_usage_error_and_imports_nothing(tmp_path):
    jsonl(tmp_path / "runs.jsonl", [documented_body("r-1")])
    with pytest.raises(CommandError, match="no such file") as usage:
        run_import(tmp_path / "runs.jsonl", tmp_path / "missing.jsonl")
    assert usage.value.returncode == 2
    assert not Run.objects.exists()


@pytest.mark.parametrize("args", [["/no/such/file.jsonl"], [], ["--batch-size", "0", "x"]])
def test_usage_errors_exit_with_status_2_from_the_command_line(args, tmp_path):
    env = {**os.environ, "SINKDASH_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run(
        [sys.executable, str(MANAGE), "import_runs", *args], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.django_db(transaction=True)  # the WAL is emptied only outside a transaction
def test_an_import_tunes_sqlite_while_it_runs_then_leaves_it_as_it_was_with_the_wal_empty(tmp_path, monkeypatch):
    from django.db import connection

    if connection.vendor != "sqlite":
        pytest.skip("SQLite's cache and WAL")
    pragmas = ("cache_size", "wal_autocheckpoint")

    def read() -> list:
        with connection.cursor() as cursor:
            return [cursor.execute(f"PRAGMA {pragma}").fetchone()[0] for pragma in pragmas]

    before, during = read(), []
    real = importer._store_batch
    monkeypatch.setattr(importer, "_store_batch", lambda batch, *a: during.append(read()) or real(batch, *a))
    path = jsonl(tmp_path / "runs.jsonl", [documented_body(f"r-{i}", result={"blob": "x" * 5000}) for i in range(40)])

    out, _ = run_import(path, "--batch-size", "10")

    assert "40 new" in out
    assert during[0] == [-importer.SQLITE_CACHE_MIB * 1024, importer.SQLITE_CHECKPOINT_PAGES]
    assert read() == before
    assert os.path.getsize(f"{connection.settings_dict['NAME']}-wal") == 0


@pytest.mark.django_db
def test_the_import_collects_garbage_less_often_and_puts_the_collector_back(tmp_path, monkeypatch):
    before, during = gc.get_threshold(), []
    real = importer._store_batch
    monkeypatch.setattr(
        importer, "_store_batch", lambda batch, *a: during.append((gc.get_threshold(), gc.get_freeze_count())) or real(batch, *a)
    )  # fmt: skip
    path = jsonl(tmp_path / "runs.jsonl", [documented_body(f"g-{i}") for i in range(20)])

    out, _ = run_import(path, "--batch-size", "10")

    assert "20 new" in out
    assert during[0][0][0] == 50_000 and during[0][1] > 0  # Django's objects frozen
    assert (gc.get_threshold(), gc.get_freeze_count()) == (before, 0)
