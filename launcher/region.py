"""Which region the launcher works in, and where that choice came from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import botocore.session

from contract.defaults import DEFAULT_REGION


@dataclass(frozen=True)
class Region:
    """The region the launcher works in, and where it came from (an option, a variable, a
    profile, the default), which the checks before launch show."""

    name: str
    source: str


@dataclass(frozen=True)
class SessionRegion:
    """What boto3's session says: its region (AWS_DEFAULT_REGION, else the profile's `region`)
    and the profile and config file it read."""

    region: str | None
    profile: str
    config_file: str


def session_region() -> SessionRegion:
    """boto3's own answer (boto3 sessions take it from botocore's); raises ProfileNotFound for
    an AWS_PROFILE that does not exist."""
    session = botocore.session.Session()
    return SessionRegion(
        session.get_config_variable("region"),
        session.get_config_variable("profile") or "default",
        session.get_config_variable("config_file"),
    )


def resolve_region(option: str | None, session: SessionRegion, env: Mapping[str, str]) -> Region:
    """--region, else boto3's session (AWS_DEFAULT_REGION, then the profile's configured
    region), else AWS_REGION, else us-east-1."""
    if option:
        return Region(option, "--region")
    if session.region:
        if env.get("AWS_DEFAULT_REGION") == session.region:
            return Region(session.region, "AWS_DEFAULT_REGION")
        return Region(session.region, f"profile {session.profile!r} in {session.config_file}")
    if env.get("AWS_REGION"):
        return Region(env["AWS_REGION"], "AWS_REGION")
    return Region(DEFAULT_REGION, "default")
