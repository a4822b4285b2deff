"""Launcher input that used to reach terraform as nan, or end in a traceback."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from contract.bucket import split_bucket
from launcher import aws
from tests.support.launcher import GIT, REPORT, Result


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--max-price", "nan", "error: --max-price must be a finite number (got nan)\n"),
        ("--max-price", "inf", "error: --max-price must be a finite number (got inf)\n"),
        ("--realtime-factor", "nan", "error: --realtime-factor must be a finite number (got nan)\n"),
        ("--boot-overhead-min", "inf", "error: --boot-overhead-min must be a finite number (got inf)\n"),
        ("--price-window-hours", "nan", "error: --price-window-hours must be a finite number (got nan)\n"),
        (
            "--price-window-hours",
            "1e12",
            (
                "error: --price-window-hours must be more than 0 and at most 2160 (90 days of "
                "spot price history) (got 1e+12)\n"
            ),
        ),
    ],
)
def test_non_finite_or_huge_numbers_exit_2_before_anything_is_written(launcher, workdir, option, value, message):
    result = launcher(*GIT, option, value, "--yes")
    assert result == Result(2, "", message)
    # status takes --max-price only: it checks it alike, and refuses the launch's options.
    status = launcher("status", option, value)
    if option == "--max-price":
        assert status == Result(2, "", message)
    else:
        assert status == Result(2, "", f"error: status does not take {option}\n")
    assert not (workdir / "terraform" / "launcher.auto.tfvars.json").exists()


def make_bucket(name, prefix="", report: bytes | None = None):
    s3 = aws.s3_client("us-east-1")
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key=prefix + "synthwave.wav", Body=b"RIFF")
    if report is not None:
        s3.put_object(Bucket=name, Key=prefix + "cost_report.csv", Body=report)


def test_status_reads_a_utf16_cost_report(launcher):
    make_bucket("songs", report=REPORT.encode("utf-16"))
    result = launcher("status", "--bucket", "songs")
    assert result.code == 0 and result.err == ""
    assert result.out.endswith("cost_report.csv: 1 song, total estimated cost $0.0335\n")


def test_status_calls_undecodable_report_unreadable(launcher):
    make_bucket("songs", report=b"\xff\x00\xfe garbage")
    result = launcher("status", "--bucket", "songs")
    assert result.code == 0 and "cost_report.csv: unreadable (no estimated_cost_usd column)" in result.out


@pytest.mark.parametrize("given", ["s3://songs", "S3://songs/", "songs/batch1", "s3://songs/batch1/"])
def test_status_accepts_the_bucket_as_an_s3_uri_or_with_a_prefix(launcher, given):
    prefix = "batch1/" if "batch1" in given else ""
    make_bucket("songs", prefix, report=REPORT.encode())
    result = launcher("status", "--bucket", given)
    assert result.code == 0, result.err
    assert f"Songs in s3://songs/{prefix}: 1 of 2 done, 1 missing\n" in result.out
    assert result.out.endswith("cost_report.csv: 1 song, total estimated cost $0.0335\n")


def test_bad_bucket_name_is_one_line(launcher):
    result = launcher("status", "--bucket", "no spaces allowed")
    # Refused before any AWS call: no workers listed.
    assert result == Result(
        2,
        "",
        "error: --bucket: 'no spaces allowed' is not an S3 bucket name (lower-case letters, digits, '.' and '-')\n",
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("songs", ("songs", "")),
        ("s3://songs", ("songs", "")),
        ("S3://songs/a/b", ("songs", "a/b/")),
        ("songs/a/", ("songs", "a/")),
    ],
)
def test_split_bucket(text, expected):
    assert split_bucket(text) == expected


def test_dry_run_accepts_a_bucket_uri(launcher):
    make_bucket("songs")
    result = launcher(*GIT, "--bucket", "s3://songs", "--dry-run")
    assert result.code == 0, result.err
    assert "Bucket s3://songs: 1 song already there (skipped), 1 song to generate" in result.out


class HtmlPage(BaseHTTPRequestHandler):
    """What a proxy's login page or a captive portal answers to every request: 200 and HTML."""

    def do_GET(self):
        self._page()

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._page()

    def _page(self):
        body = b"<!doctype html><html><title>Sign in to the network</title></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def html_endpoint(monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), HtmlPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.server_address[1]}")
    yield
    server.shutdown()
    server.server_close()


def test_an_answer_that_is_not_aws_is_one_line(launcher, html_endpoint):
    """botocore raises ResponseParserError, which is no BotoCoreError, on an HTML page."""
    result = launcher("status", "--bucket", "songs")

    assert result.code == 2 and result.out == ""
    assert result.err.startswith("error: AWS: an answer in region us-east-1 could not be read (")
    assert result.err.endswith(
        "); check --region, AWS_ENDPOINT_URL and any proxy (HTTPS_PROXY) between you and AWS\n"
    )
    assert result.err.count("\n") == 1


def test_a_region_the_endpoint_does_not_serve_is_one_line(launcher):
    """moto's server answers a region it does not know with an HTML error page (HTTP 500)."""
    result = launcher("status", "--bucket", "songs", "--region=mars-1")

    assert result.code == 2 and result.out == ""
    assert result.err.startswith("error: AWS: an answer in region mars-1 could not be read (")
    assert result.err.count("\n") == 1
