"""The CLI as a user runs it: real files, exit codes and messages. Most calls run in-process on the session's
loaded models (the process boundary is tested once, with ``python -m picmetric``)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from picmetric.interfaces.cli import main
from picmetric.settings import get_settings


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def run(capsys, analyzer):
    """``picmetric ARGS...`` in this process, with the session's models; returns exit code and output."""

    def invoke(*args: str) -> Result:
        capsys.readouterr()
        code = main(list(args))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return invoke


def test_a_real_process_prints_json_and_exit_code(zidane_path, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "picmetric", "analyze", str(zidane_path), "--json", "--tasks", "faces"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["faces"]) == 2
    refused = subprocess.run(
        [sys.executable, "-m", "picmetric", "analyze", str(tmp_path / "missing.jpg")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert refused.returncode == 1 and "no such file" in refused.stderr and "Traceback" not in refused.stderr


def test_analyze_prints_a_summary_and_writes_renders(run, tmp_path, zidane_path, bus_path):
    out = tmp_path / "out"
    result = run("analyze", str(zidane_path), str(bus_path), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "zidane.jpg  1280x720 JPEG" in result.stdout
    assert "faces  : 2" in result.stdout and "person" in result.stdout
    assert "image" in result.stderr  # the progress bar for several images
    files = sorted(p.name for p in out.iterdir())
    assert len([f for f in files if f.endswith("_objects.webp")]) == 2
    assert len([f for f in files if f.endswith(".json")]) == 2


def test_analyze_json(run, zidane_path):
    result = run("analyze", str(zidane_path), "--json", "--tasks", "faces,objects")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert len(data["faces"]) == 2 and data["labels"] is None


def test_bad_input_exits_non_zero_with_a_clear_message(run, tmp_path, zidane_path):
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    result = run("analyze", str(text), str(zidane_path), "-q")
    assert result.returncode == 1
    assert "notes.txt: this is not an image" in result.stderr
    assert "Traceback" not in result.stderr
    assert "zidane.jpg" in result.stdout  # the good image is still analysed


def test_refused_url_and_bad_option(run, zidane_path):
    result = run("analyze", "http://169.254.169.254/latest/meta-data/")
    assert result.returncode == 1 and "not a public internet address" in result.stderr
    result = run("analyze", str(zidane_path), "--min-confidence", "3")
    assert result.returncode == 2 and "--min-confidence must be between 0 and 1" in result.stderr
    result = run("analyze", str(zidane_path), "--top-k", "99", "--iou", "2")  # named as typed, not as fields
    assert result.returncode == 2 and "--top-k must be between 1 and 20" in result.stderr
    assert "--iou must be between 0 and 1" in result.stderr and "top_k" not in result.stderr


def test_version():
    from picmetric import __version__

    result = subprocess.run(
        [str(Path(sys.executable).with_name("picmetric")), "--version"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stdout.strip() == f"picmetric {__version__}"


def test_models_list(run):
    result = run("models", "list")
    assert result.returncode == 0 and "EfficientNet-Lite2" in result.stdout and "YuNet" in result.stdout
    detector = next(line for line in result.stdout.splitlines() if line.strip().startswith("yolov4-tiny "))
    assert "80 classes (person, bicycle, car, motorbike, ...)" in detector and "416 px or 608 px" in detector


@pytest.fixture
def cli(run, monkeypatch, tmp_path):
    """``run`` against an empty SQLite + folder store in this test's folder."""
    monkeypatch.setenv("PICMETRIC_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    yield run
    monkeypatch.undo()
    get_settings.cache_clear()


def test_store_history_reset_and_db_upgrade(cli, tmp_path, zidane_path):
    assert "schema at revision" in cli("db", "upgrade").stdout
    first = cli("analyze", str(zidane_path), "--store", "-q")
    assert first.returncode == 0 and " ms)" in first.stdout
    second = cli("analyze", str(zidane_path), "--store", "-q")
    assert "from history" in second.stdout
    assert len(list((tmp_path / "data").rglob("renders/*"))) == 1  # the thumbnail: nothing drawn yet
    for out in (tmp_path / "out1", tmp_path / "out2"):  # --out draws the pictures once and keeps them
        cli("analyze", str(zidane_path), "--store", "-q", "--out", str(out))
        assert sorted(p.suffix for p in out.iterdir()) == [".json", ".webp", ".webp"]
        assert len(list((tmp_path / "data").rglob("renders/*"))) == 3
    listing = cli("history", "person", "--min-faces", "2")
    assert "1 analysis (page 1 of 1)" in listing.stdout and "zidane.jpg" in listing.stdout
    assert "0 analyses" in cli("history", "giraffe").stdout
    refused = cli("reset")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert "1 analysis" in cli("history").stdout  # nothing was deleted without confirmation
    assert cli("reset", "--yes").returncode == 0
    assert "0 analyses" in cli("history").stdout


def test_bad_out_folder_is_one_line_before_any_work(run, tmp_path, zidane_path, analyzer):
    taken = tmp_path / "taken"
    taken.write_text("a file")
    calls = analyzer.calls
    for out, message in ((taken, "a file of that name exists"), ("/proc/picmetric-out", "cannot create that folder")):
        result = run("analyze", str(zidane_path), "--out", str(out))
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert analyzer.calls == calls  # refused before the models ran


@pytest.mark.parametrize(
    ("variable", "value", "args", "message", "code"),
    [
        ("PICMETRIC_MAX_PIXELS", "abc", ("analyze", "x.jpg"), "configuration: max_pixels", 2),
        ("PICMETRIC_URL_ALLOW_NETWORKS", '["10.0.0.0/33"]', ("analyze", "x.jpg"), "PICMETRIC_URL_ALLOW_NETWORKS", 2),
        ("DATABASE_URL", "notaurl", ("history",), "database URL cannot be parsed", 2),
        ("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none", ("db", "upgrade"), "could not be reached", 1),
    ],
)
def test_configuration_errors_are_one_line(run, monkeypatch, variable, value, args, message, code):
    monkeypatch.setenv(variable, value)
    get_settings.cache_clear()
    try:
        result = run(*args)
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert result.returncode == code and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_folder_is_analysed_recursively_by_image_extension(cli, tmp_path, zidane_path, bus_path):
    folder = tmp_path / "photos"
    (folder / "nested" / "deeper").mkdir(parents=True)
    (folder / "a.jpg").write_bytes(zidane_path.read_bytes())
    (folder / "nested" / "deeper" / "B.JPEG").write_bytes(bus_path.read_bytes())
    (folder / "nested" / "notes.txt").write_text("not a photo")
    result = cli("analyze", str(folder), "--store", "-q", "--json")
    assert result.returncode == 0, result.stderr
    assert [Path(item["input"]).name for item in json.loads(result.stdout)] == ["a.jpg", "B.JPEG"]
    empty = tmp_path / "empty"
    empty.mkdir()
    refused = cli("analyze", str(empty))
    assert refused.returncode == 1 and "no image files in this folder" in refused.stderr


def test_ingest_queues_every_image_under_an_s3_prefix(cli, monkeypatch, seaweed, tmp_path, zidane_path, bus_path):
    """The bulk case, with no broker: the jobs run in this process, the store is the S3 server itself."""
    bucket = f"ingest-{uuid.uuid4().hex[:10]}"
    s3 = seaweed.client()
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="class/day1/zidane.jpg", Body=zidane_path.read_bytes())
    s3.put_object(Bucket=bucket, Key="class/day2/bus.JPG", Body=bus_path.read_bytes())
    s3.put_object(Bucket=bucket, Key="class/day2/broken.png", Body=b"not an image")
    s3.put_object(Bucket=bucket, Key="class/readme.md", Body=b"ignored")
    s3.put_object(Bucket=bucket, Key="other/elsewhere.jpg", Body=zidane_path.read_bytes())
    for name, value in {
        "S3_BUCKET": bucket, "S3_ENDPOINT_URL": seaweed.endpoint, "S3_KEY": "test-access",
        "S3_SECRET": "test-secret-value",
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    result = cli("ingest", f"s3://{bucket}/class/", "-q")
    assert result.returncode == 1  # one of them is broken: said so, the others analysed
    assert "3 images queued (in-process)" in result.stderr
    assert "broken.png" in result.stderr and "2 analysed or found in history, 1 failed" in result.stdout
    history = cli("history", "--source", "s3", "--json")
    assert sorted(item["name"] for item in json.loads(history.stdout)) == [
        f"s3://{bucket}/class/day1/zidane.jpg",
        f"s3://{bucket}/class/day2/bus.JPG",
    ]
    missing = cli("ingest", f"s3://{bucket}/nothing-here/", "-q")
    assert missing.returncode == 1 and "no images under" in missing.stderr


def test_a_worker_needs_a_broker(run):
    result = run("worker")
    assert result.returncode == 2 and "PICMETRIC_BROKER_URL" in result.stderr


def test_models_warm_says_what_it_is_doing(cli):
    """``./bootstrap.sh run`` shows this on a first run: a line per model with its time, never two silent minutes."""
    warm = cli("models", "warm")
    lines = [line for line in warm.stderr.splitlines() if line.startswith("  model ")]
    assert warm.returncode == 0 and len(lines) >= 9, warm.stderr
    assert lines[0].startswith("  model 1/") and lines[0].endswith(" s") and "yunet" in warm.stderr
    assert "loaded" in warm.stdout and not cli("models", "warm", "--quiet").stderr
