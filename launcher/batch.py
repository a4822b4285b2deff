"""The batch: songs asked for in the prompts file against songs already in the bucket."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from contract.aws import error_code
from contract.bucket import REPORT_KEY
from contract.defaults import usd_amount
from contract.prompts import Job, PromptFile, has_utf16_bom
from contract.records import COST_COLUMN, REBUILT_NOTE
from contract.songs import REGENERATE_HINT, describe_change, made_for_s, size_problem
from launcher.failed import FailedSong, format_failed
from launcher.screen import at_most


@dataclass(frozen=True)
class Progress:
    done: list[Job]
    missing: list[Job]
    # Done songs whose line now asks for something else: (job, what changed).
    changed: list[tuple[Job, str]] = field(default_factory=list)
    # Missing songs whose stored file is damaged (the workers make them again), with why.
    damaged: dict[str, str] = field(default_factory=dict)

    @property
    def missing_audio_s(self) -> float:
        return sum(job.duration_s for job in self.missing)


@dataclass(frozen=True)
class CostReport:
    songs: int
    total_usd: float
    # s3_filename of each row whose cost is blank: a record the workers rebuilt from the
    # stored song, whose generation time nobody knows.
    unknown: tuple[str, ...] = ()


def songs_in_bucket(s3: Any, bucket: str, prefix: str = "") -> set[str] | None:
    """Names of the objects at the bucket's root (or the prefix's top level), relative to the
    prefix; None when the bucket does not exist yet.

    Only the top level is listed: songs live there, while the worker's bookkeeping under
    .checkpoints/, .records/, .leases/ and logs/ can hold many more objects.
    """
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Delimiter="/", **({"Prefix": prefix} if prefix else {})
    )
    try:
        return {
            obj["Key"][len(prefix) :] for page in pages for obj in page.get("Contents", [])
        }
    except ClientError as exc:
        if error_code(exc) == "NoSuchBucket":
            return None
        raise


def split_progress(jobs: list[Job], keys: set[str]) -> Progress:
    """Done means the song's file is in the bucket, which is also how the worker skips it."""
    return Progress(
        done=[job for job in jobs if job.file_name in keys],
        missing=[job for job in jobs if job.file_name not in keys],
    )


def examine_done(s3: Any, bucket: str, progress: Progress, prefix: str = "") -> Progress:
    """One HEAD per done song: those whose stored file is damaged (by the rule the workers apply,
    contract.songs) move to missing, and the others whose metadata names another prompt or
    duration are listed as changed."""
    done, damaged, changed = [], {}, []
    missing = list(progress.missing)
    for job in progress.done:
        try:
            head = s3.head_object(Bucket=bucket, Key=prefix + job.file_name)
        except ClientError:
            done.append(job)  # gone meanwhile, or not readable: nothing to say about it
            continue
        metadata = head.get("Metadata", {})
        size = int(head.get("ContentLength", 0))
        why = size_problem(job.file_name, size, metadata, made_for_s(metadata, job.duration_s))
        if why is not None:
            damaged[job.file_name] = why
            missing.append(job)
            continue
        done.append(job)
        change = describe_change(job, metadata.get("prompt-hash"), metadata.get("duration-s"))
        if change is not None:
            changed.append((job, change))
    missing.sort(key=lambda job: job.line_no)
    return Progress(done, missing, changed, damaged)


def _format_changed(progress: Progress) -> list[str]:
    if not progress.changed:
        return []
    return [
        f"  changed since generated ({REGENERATE_HINT}):",
        *at_most(
            [f"    {job.file_name}  (line {job.line_no}: {change})" for job, change in progress.changed],
            _more,
        ),
    ]


def parse_cost_report(text: str) -> CostReport:
    """Rows and summed estimated cost; ValueError when the file is not the worker's CSV."""
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or COST_COLUMN not in reader.fieldnames:
        raise ValueError(f"no {COST_COLUMN} column")
    songs, total, unknown = 0, 0.0, []
    for row in reader:
        songs += 1
        if row[COST_COLUMN] == "":  # a rebuilt record: its cost is unknown
            unknown.append(row.get("s3_filename") or "")
            continue
        try:
            total += float(row[COST_COLUMN])
        except (TypeError, ValueError):
            raise ValueError(
                f"row {reader.line_num}: {COST_COLUMN} {row[COST_COLUMN]!r} is not a number"
            ) from None
    return CostReport(songs=songs, total_usd=total, unknown=tuple(unknown))


def read_cost_report(s3: Any, bucket: str, prefix: str = "") -> str | None:
    """The report's text, or None while the worker has not written one."""
    try:
        body = s3.get_object(Bucket=bucket, Key=prefix + REPORT_KEY)["Body"]
    except ClientError as exc:
        if error_code(exc) in ("NoSuchKey", "NoSuchBucket"):
            return None
        raise
    return decode_report(body.read())


def decode_report(data: bytes) -> str:
    """UTF-8 as the worker writes it, or UTF-16 with a BOM as a spreadsheet may save it; bytes
    that are neither come out as replacement characters, for the parser to call unreadable."""
    if has_utf16_bom(data):
        return data.decode("utf-16", errors="replace")
    return data.decode("utf-8-sig", errors="replace")


def format_prompts(path: str, prompt_file: PromptFile) -> list[str]:
    jobs = prompt_file.jobs
    minutes = sum(job.duration_s for job in jobs) / 60
    lines = [f"Batch: {_songs(len(jobs))} in {path}, {minutes:.1f} min of audio requested"]
    if prompt_file.errors:
        count = len(prompt_file.errors)
        one = count == 1
        lines.append(
            f"  {count} invalid {'line is' if one else 'lines are'} skipped, "
            f"as the worker would skip {'it' if one else 'them'}:"
        )
        lines.extend(f"    {error}" for error in prompt_file.errors)
    return lines


def format_bucket_for_launch(bucket: str | None, progress: Progress | None) -> list[str]:
    if bucket is None:
        return ["Bucket: none yet (terraform creates one); every song will be generated"]
    if progress is None:
        return [f"Bucket {bucket}: does not exist yet; every song will be generated"]
    return [
        (
            f"Bucket {bucket}: {_songs(len(progress.done))} already there (skipped), "
            f"{_songs(len(progress.missing))} to generate "
            f"({progress.missing_audio_s / 60:.1f} min of audio)"
        ),
        *_format_changed(progress),
    ]


def format_progress(
    bucket: str,
    progress: Progress,
    report: str | None,
    prefix: str = "",
    given_up: Sequence[FailedSong] = (),
) -> list[str]:
    """Songs failed for good (`given_up`) are listed with their errors, not as missing: the
    workers will not try them again."""
    failed_names = {song.job.file_name for song in given_up}
    missing = [job for job in progress.missing if job.file_name not in failed_names]
    total = len(progress.done) + len(progress.missing)
    rebuilt = _rebuilt(report, prefix)
    lines = [
        f"Songs in s3://{bucket}/{prefix}: {len(progress.done)} of {total} done, "
        + f"{len(missing)} missing"
        + (f", {len(given_up)} failed for good" if given_up else "")
    ]
    if progress.done:
        lines.append("  done:")
        lines.extend(
            at_most(
                [
                    f"    {job.file_name}" + (f"  ({REBUILT_NOTE})" if job.file_name in rebuilt else "")
                    for job in progress.done
                ],
                _more,
            )
        )
    lines.extend(_format_changed(progress))
    if missing:
        lines.append("  missing:")
        lines.extend(
            at_most(
                [
                    f"    {job.file_name}  (line {job.line_no}, {job.duration_s:g} s"
                    + (
                        f"; stored file damaged: {progress.damaged[job.file_name]}; made again, the "
                        "damaged file kept in .damaged/"
                        if job.file_name in progress.damaged
                        else ""
                    )
                    + ")"
                    for job in missing
                ],
                _more,
            )
        )
    lines.extend(format_failed(list(given_up)))
    lines.append(_format_report(report))
    return lines


def _rebuilt(report: str | None, prefix: str) -> set[str]:
    """File names whose report row has no cost (their records were rebuilt)."""
    if report is None:
        return set()
    try:
        parsed = parse_cost_report(report)
    except ValueError:
        return set()
    return {name.removeprefix(prefix) for name in parsed.unknown}


def _more(count: int) -> str:
    return f"    … and {count} more"


def _format_report(report: str | None) -> str:
    if report is None:
        return f"{REPORT_KEY}: not written yet"
    try:
        parsed = parse_cost_report(report)
    except ValueError as exc:
        return f"{REPORT_KEY}: unreadable ({exc})"
    unknown = len(parsed.unknown)
    return (
        f"{REPORT_KEY}: {_songs(parsed.songs)}, total estimated cost {usd_amount(parsed.total_usd)}"
        + (f" ({_songs(unknown)} of unknown cost not included: records rebuilt)" if unknown else "")
    )


def _songs(count: int) -> str:
    return f"{count} song{'' if count == 1 else 's'}"
