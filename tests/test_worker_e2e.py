"""The worker CLI end to end: moto's S3 server over real HTTP, or a local folder."""

import io

import boto3
import pytest
import soundfile

from contract.records import REPORT_COLUMNS, SongRecord
from tests.support.failing_loader import WINDOW, Loader
from worker.cli import main
from worker.output.report import parse_report

PROMPTS = """\
# two songs, one bad line, one song whose generation fails
epic cinematic trailer drums ; 11 ; epic
calm piano;1.5;calm.wav
broken line without fields
this song will fail ; 3 ; fail.wav
"""
def wav_lengths(blobs):
    return {name: soundfile.info(io.BytesIO(data)).frames for name, data in blobs.items()}


def check_first_run(code, err, files, report):
    assert code == 0  # fail.wav given up after its two attempts: done, and listed
    assert "prompts.txt line 4: expected 'PROMPT ; DURATION_S ; FILE_NAME'" in err
    assert "failed fail.wav (line 5): RuntimeError: injected fault for 'this song will fail'" in err
    assert "Traceback" in err
    assert wav_lengths(files) == {"epic.wav": 88_000, "calm.wav": 12_000}
    info = soundfile.info(io.BytesIO(files["epic.wav"]))
    assert (info.samplerate, info.channels, info.subtype) == (8000, 1, "PCM_16")
    rows = parse_report(report)
    assert tuple(rows[0].keys()) == REPORT_COLUMNS
    assert [(r["prompt"], r["requested_duration_s"]) for r in rows] == [
        ("epic cinematic trailer drums", "11"),
        ("calm piano", "1.5"),
    ]
    for row in rows:
        seconds = float(row["generation_time_s"])
        assert seconds > 0
        assert float(row["estimated_cost_usd"]) == pytest.approx(seconds / 3600 * 0.5, abs=1e-6)


def check_page(page: bytes, records: dict[str, bytes]):
    """The listening page lists both songs with players, and the failure with its line."""
    html = page.decode("utf-8")
    assert html.count('<tr class="done">') == 2 and html.count('<tr class="failed">') == 1
    assert '<audio controls preload="metadata" src="epic.wav"' in html
    assert '<td class="num" data-label="Line">5</td><td data-label="Song">fail.wav</td>' in html
    assert "RuntimeError: injected fault for &#x27;this song will fail&#x27;" in html
    for name in ("epic.wav", "calm.wav"):
        record = SongRecord.from_json(records[name])
        assert len(record.waveform) == 200
        assert all(-1 <= low <= high <= 1 for low, high in record.waveform)


def test_worker_against_s3(aws_env, tiny_model_dir, loaded_tiny_engine, tmp_path, capsys):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="songs")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(PROMPTS)
    argv = ["--prompts", str(prompts), "--output", "s3://songs/batch1", "--model", str(tiny_model_dir), *WINDOW]
    loader = Loader(loaded_tiny_engine)

    code = main(argv, load_engine=loader)
    out, err = capsys.readouterr()
    assert out == "Listen: s3://songs/batch1/index.html (`python launcher download` copies it with the songs)\n"
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="songs")["Contents"])
    assert "batch1/epic.wav" in keys and "batch1/fail.wav" not in keys
    files = {k.split("/")[-1]: s3.get_object(Bucket="songs", Key=k)["Body"].read() for k in keys if k.endswith(".wav")}
    report = s3.get_object(Bucket="songs", Key="batch1/cost_report.csv")["Body"].read()
    check_first_run(code, err, files, report)
    assert [r["s3_filename"] for r in parse_report(report)] == ["batch1/epic.wav", "batch1/calm.wav"]
    page = s3.get_object(Bucket="songs", Key="batch1/index.html")
    assert page["ContentType"] == "text/html; charset=utf-8"
    records = {
        name: s3.get_object(Bucket="songs", Key=f"batch1/.records/{name}.json")["Body"].read()
        for name in ("epic.wav", "calm.wav")
    }
    check_page(page["Body"].read(), records)
    meta = s3.head_object(Bucket="songs", Key="batch1/epic.wav")["Metadata"]
    assert set(meta) == {"prompt-hash", "seed", "model", "duration-s", "sample-rate", "channels"}
    assert meta["duration-s"] == "11" and int(meta["seed"]) >= 0
    assert (meta["sample-rate"], meta["channels"]) == ("8000", "1")  # the tiny model's

    # Rerun without the failing line: both songs are skipped, no model is even loaded.
    prompts.write_text("\n".join(line for line in PROMPTS.splitlines() if "fail" not in line))
    rerun = Loader(loaded_tiny_engine)
    assert main(argv, load_engine=rerun) == 0
    err = capsys.readouterr().err
    assert rerun.spies == []
    assert "skipped epic.wav: already at s3://songs/batch1/epic.wav" in err
    assert "skipped calm.wav" in err
    assert s3.get_object(Bucket="songs", Key="batch1/cost_report.csv")["Body"].read() == report


def test_worker_into_a_local_folder(tiny_model_dir, loaded_tiny_engine, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(PROMPTS)
    out = tmp_path / "out"
    argv = ["--prompts", str(prompts), "--output", str(out), "--model", str(tiny_model_dir), *WINDOW]
    code = main(argv, load_engine=Loader(loaded_tiny_engine))
    stdout, err = capsys.readouterr()
    files = {p.name: p.read_bytes() for p in out.glob("*.wav")}
    check_first_run(code, err, files, (out / "cost_report.csv").read_bytes())
    assert stdout == f"Listen: {(out / 'index.html').as_uri()}\n"
    records = {p.name.removesuffix(".json"): p.read_bytes() for p in (out / ".records").iterdir()}
    check_page((out / "index.html").read_bytes(), records)
    # fail.wav failed for good: listed again.
    assert main(argv, load_engine=Loader(loaded_tiny_engine)) == 0
    assert "skipped epic.wav" in capsys.readouterr().err
