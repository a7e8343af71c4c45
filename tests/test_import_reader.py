"""import_runs of large inputs: read and parsed in a process of their own while the importer stores,
with the same result as reading them in the importer's own process."""

import io
import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from runs import readahead, reading
from runs.importer import import_inputs
from runs.models import Delivery, RejectedDelivery, Run
from runs.payload import Refused
from tests.conftest import documented_body, example_bytes, newer_body
from tests.recount import counter_mismatches

pytestmark = pytest.mark.django_db


@pytest.fixture
def readers(monkeypatch) -> list[subprocess.Popen]:
    """Every input goes to a reading process, however small; the processes started."""
    started = []
    real = readahead.subprocess.Popen

    def popen(command, **kwargs):
        started.append(real(command, **kwargs))
        return started[-1]

    monkeypatch.setattr(readahead, "PROCESS_FROM_BYTES", 0)
    monkeypatch.setattr(readahead.subprocess, "Popen", popen)
    return started


def run_import(*args, **options) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("import_runs", *[str(a) for a in args], stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def test_a_reading_process_imports_every_shape_and_refusal_as_the_importer_would(tmp_path, readers, settings):
    settings.MAX_BODY_BYTES = 1024 * 1024
    (tmp_path / "one.json").write_bytes(example_bytes("newer-failed.json"))
    (tmp_path / "array.json").write_text(json.dumps([documented_body("a-1"), newer_body("a-2")], indent=1))
    huge = json.dumps(documented_body("huge", result={"blob": "x" * (2 * 1024 * 1024)}))
    lines = [documented_body("l-1", status="failed"), "not json", huge, {"no": "apiInfo"}, documented_body("l-5")]
    (tmp_path / "runs.jsonl").write_text("".join((b if isinstance(b, str) else json.dumps(b)) + "\n" for b in lines))

    err = io.StringIO()
    with pytest.raises(CommandError, match="3 bodies were refused"):
        call_command("import_runs", str(tmp_path), "--batch-size", "2", stdout=io.StringIO(), stderr=err)

    assert len(readers) == 1 and readers[0].args[0] == sys.executable and readers[0].returncode == 0
    assert set(Run.objects.values_list("run_id", flat=True)) == {
        "0b6f4c1e-5d2a-4a39-9f1e-2c8d7a10e004", "a-1", "a-2", "l-1", "l-5",
    }  # fmt: skip
    assert Run.objects.get(run_id="l-1").failure_group is not None
    assert Delivery.objects.get(run__run_id="a-2").source.startswith(f"{tmp_path / 'array.json'}:")
    quarantined = dict(RejectedDelivery.objects.values_list("source", "reason"))
    assert set(quarantined) == {f"{tmp_path / 'runs.jsonl'}:2", f"{tmp_path / 'runs.jsonl'}:4"}  # not the huge one
    assert "not valid JSON" in quarantined[f"{tmp_path / 'runs.jsonl'}:2"]
    assert f"refused {tmp_path / 'runs.jsonl'}:3: line is longer than the 1 MB body limit" in err.getvalue()
    assert counter_mismatches() == []


def test_progress_is_reported_to_the_end_of_every_file(tmp_path, readers):
    first = tmp_path / "a.jsonl"
    first.write_text("".join(json.dumps(documented_body(f"a-{i}")) + "\n" for i in range(5)))
    second = tmp_path / "b.jsonl"
    second.write_text("".join(json.dumps(documented_body(f"b-{i}")) + "\n" for i in range(3)))
    done = []

    summary = import_inputs(reading.inputs([str(first), str(second)]), batch_size=2, on_progress=done.append)

    assert summary.outcomes["created"] == 8 and summary.files == 2
    assert done == sorted(done)
    assert first.stat().st_size in done
    assert done[-1] == first.stat().st_size + second.stat().st_size
    assert len(readers) == 1


def test_standard_input_is_read_in_the_importer_itself(readers):
    body = json.dumps(documented_body("s-1")).encode() + b"\n"
    out, _ = run_import("-", stdin=io.BytesIO(body))
    assert "1 new" in out
    assert readers == []


def test_a_file_gone_before_it_is_read_is_an_error_that_keeps_what_was_stored(tmp_path, readers):
    kept = tmp_path / "a.jsonl"
    kept.write_text(json.dumps(documented_body("a-1")) + "\n")
    gone = tmp_path / "b.jsonl"
    gone.write_text(json.dumps(documented_body("b-1")) + "\n")
    items = reading.inputs([str(kept), str(gone)])
    gone.unlink()

    with pytest.raises(FileNotFoundError, match="b.jsonl"):
        import_inputs(items)

    assert list(Run.objects.values_list("run_id", flat=True)) == ["a-1"]


def test_the_command_says_which_read_failed(tmp_path, readers, monkeypatch):
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps(documented_body("a-1")) + "\n")
    real = reading.inputs

    def then_removed(*args, **kwargs):
        found = real(*args, **kwargs)
        path.unlink()
        return found

    monkeypatch.setattr("runs.management.commands.import_runs.inputs", then_removed)
    with pytest.raises(CommandError, match=r"reading the inputs failed: .*No such file.*a\.jsonl"):
        run_import(path)


def test_a_reading_process_that_dies_is_an_error_not_the_end_of_the_input(tmp_path, readers, monkeypatch):
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps(documented_body("a-1")) + "\n")
    monkeypatch.setattr(readahead, "_READER", [sys.executable, "-c", "import os; os._exit(9)"])

    with pytest.raises(CommandError, match="reading the inputs failed: the process reading the inputs ended unexpectedly"):
        run_import(path)

    assert not Run.objects.exists()


def test_the_peak_memory_of_both_processes_is_reported_when_asked(tmp_path, readers):
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps(documented_body("a-1")) + "\n")
    out, _ = run_import(path, verbosity=2)
    line = next(line for line in out.splitlines() if line.startswith("Peak memory:"))
    here, reader = (int(word) for word in line.split() if word.isdigit())
    assert here > 20 and reader > 5  # an interpreter each, in MB
    cpu = next(line for line in out.splitlines() if line.startswith("CPU time:"))
    assert float(cpu.split()[2]) > 0.1  # Django's start-up alone takes more


def fifty_bodies_whose_second_batch_raises(tmp_path, monkeypatch, error: BaseException) -> Path:
    """A file of 50 bodies, and storing that stores its first batch and raises at the second."""
    from runs import importer

    path = tmp_path / "a.jsonl"
    path.write_text("".join(json.dumps(documented_body(f"a-{i}")) + "\n" for i in range(50)))
    real, stored = importer._store_batch, []

    def store_once(batch, *args):
        if stored:
            raise error
        stored.append(len(batch))
        real(batch, *args)

    monkeypatch.setattr(importer, "_store_batch", store_once)
    return path


def test_a_failure_to_store_stops_the_reading_process(tmp_path, readers, monkeypatch):
    path = fifty_bodies_whose_second_batch_raises(tmp_path, monkeypatch, RuntimeError("the disk is full"))

    with pytest.raises(RuntimeError, match="the disk is full"):
        import_inputs(reading.inputs([str(path)]), batch_size=10)

    assert readers[0].poll() is not None  # ended and reaped, not left behind
    assert Run.objects.count() == 10


def test_ctrl_c_stops_the_import_with_what_was_stored_kept_and_no_traceback(tmp_path, readers, monkeypatch):
    path = fifty_bodies_whose_second_batch_raises(tmp_path, monkeypatch, KeyboardInterrupt())

    with pytest.raises(CommandError, match="interrupted: the batches before it are stored") as stopped:
        run_import(path, "--batch-size", "10")

    assert stopped.value.returncode == 130
    assert readers[0].poll() is not None
    assert Run.objects.count() == 10


def test_the_reader_sends_large_bodies_a_few_at_a_time_and_small_ones_by_the_hundred():
    """Bodies reach the 10 MB limit: 250 of those in one message would hold gigabytes."""
    def reads(sizes):
        return [(reading.Read("f:1", b"x" * size, "", Refused(422, "")), 0) for size in sizes] + [(None, 0)]

    large = [len(chunk) for chunk in readahead._chunks(reads([600 * 1024] * 7))]
    small = [len(chunk) for chunk in readahead._chunks(reads([1024] * 600))]

    assert large == [2, 2, 2, 2]  # two bodies reach 1 MB; the input's end closes the last
    assert small == [250, 250, 101]


def test_a_refusal_crosses_the_pipe_whole():
    refusal = pickle.loads(pickle.dumps(Refused(422, "apiInfo.runId is missing", "apiInfo.runId")))
    assert (refusal.http_status, refusal.reason, refusal.field) == (422, "apiInfo.runId is missing", "apiInfo.runId")
