"""The option tables in docs/ are generated (`make docs`); these tests fail when they are stale
and pin down how a click command becomes a table."""

from __future__ import annotations

import difflib
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

from launcher.cli import cli as launcher_command
from tools import docs
from worker.cli import command as worker_command

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_generated_docs_are_current() -> None:
    stale = []
    for path, text in docs.generated().items():
        current = path.read_text(encoding="utf-8")
        if current != text:
            diff = difflib.unified_diff(
                current.splitlines(), text.splitlines(), "in the file", "generated", lineterm="", n=0
            )
            stale.append(f"{path.relative_to(REPO_ROOT)}:\n" + "\n".join(list(diff)[:20]))
    assert not stale, "docs are stale, run make docs:\n" + "\n".join(stale)


def _option_strings(command: click.Command) -> list[str]:
    found = []
    for param in command.params:
        if isinstance(param, click.Option) and "--help" not in param.opts:
            found += param.opts + param.secondary_opts
    for sub in getattr(command, "commands", {}).values():
        found += _option_strings(sub)
    return found


@pytest.mark.parametrize(
    ("relative", "command"),
    [("docs/worker.md", worker_command), ("docs/launcher.md", launcher_command)],
)
def test_every_option_of_the_command_has_a_row(relative: str, command: click.Command) -> None:
    text = (REPO_ROOT / relative).read_text()
    options = _option_strings(command)
    assert options
    for option in options:
        # the first cell of a row: `-v, --verbose` or `--prompts PROMPTS`
        first_cell = rf"^\| `[^`|]*(?<![\w-]){re.escape(option)}(?![\w-])[^`|]*` \|"
        assert re.search(first_cell, text, re.MULTILINE), option


def test_the_users_environment_never_reaches_the_docs(monkeypatch: pytest.MonkeyPatch) -> None:
    before = docs.generated()
    monkeypatch.setenv("MUSICGEN_PROMPTS", "mine.txt")
    monkeypatch.setenv("MUSICGEN_BATCH_SIZE", "4")
    monkeypatch.setenv("MUSICGEN_TERRAFORM_DIR", "/somewhere/else")
    assert docs.generated() == before
    # and the environment is the user's again afterwards
    assert os.environ["MUSICGEN_PROMPTS"] == "mine.txt"


def test_generating_the_docs_loads_neither_torch_nor_transformers() -> None:
    code = (
        "import sys; from tools import docs; docs.generated(); "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        check=False, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def _table(command: click.Command) -> str:
    return docs.options_markdown(docs.read_command(command))


def test_an_options_variable_is_its_envvar() -> None:
    command = click.Command(
        "tool",
        params=[
            click.Option(["--size"], envvar="TOOL_SIZE", default="3", help="size"),
            click.Option(["--name"], envvar="TOOL_NAME", help="name (default: host name)"),
            click.Option(["--plain"], default="x", help="no variable [TOOL_PLAIN, default x]"),
        ],
    )

    assert _table(command) == (
        "| Option | Environment | Default | Meaning |\n"
        "|---|---|---|---|\n"
        "| `--size SIZE` | `TOOL_SIZE` | `3` | size |\n"
        "| `--name NAME` | `TOOL_NAME` | host name | name |\n"
        "| `--plain PLAIN` |  | `x` | no variable [TOOL_PLAIN, default x] |"
    )


def test_a_help_that_restates_its_variable_in_brackets_loses_the_brackets() -> None:
    command = click.Command(
        "tool",
        params=[
            click.Option(
                ["--window"], envvar="TOOL_WINDOW", default="30",
                help="seconds per window [TOOL_WINDOW, default 30]",
            )
        ],
    )

    assert _table(command).splitlines()[-1] == (
        "| `--window WINDOW` | `TOOL_WINDOW` | `30` | seconds per window |"
    )


def test_without_any_variable_the_table_has_no_environment_column() -> None:
    command = click.Command(
        "tool",
        params=[
            click.Argument(["mode"], required=False, type=click.Choice(["status", "download"])),
            click.Option(["--price"], type=float, default=0.4, help="USD (default: 0.40)"),
            click.Option(["--kind"], default="g4dn.xlarge", help="g4dn.xlarge"),
            click.Option(["--region"], help="region (default: boto3's (profile), else us-east-1)"),
            click.Option(["--var"], multiple=True, metavar="K=V", help="a variable"),
            click.Option(["--tag"], multiple=True, help="a tag, repeat for more"),
            click.Option(["--prefix"], default="", help="a | b"),
            click.Option(["-y", "--yes"], is_flag=True, help="do not ask"),
            click.Option(["--pair"], nargs=2, help="two"),
            click.Option(["--type"], multiple=True, default=["a.x", "b.y"], help="types"),
            click.Option(["--keep/--no-keep"], default=False, help="k"),
            click.Option(["--wait/--no-wait"], default=True),
        ],
    )

    assert _table(command) == (
        "| Option | Default | Meaning |\n"
        "|---|---|---|\n"
        "| `[MODE]` |  | one of `status`, `download` |\n"
        "| `--price PRICE` | `0.40` | USD |\n"
        "| `--kind KIND` | `g4dn.xlarge` |  |\n"
        "| `--region REGION` | boto3's (profile), else us-east-1 | region |\n"
        "| `--var K=V` |  | a variable (repeatable) |\n"
        "| `--tag TAG` |  | a tag, repeat for more |\n"
        '| `--prefix PREFIX` | `""` | a \\| b |\n'
        "| `-y, --yes` |  | do not ask |\n"
        "| `--pair PAIR PAIR` | not set | two |\n"
        "| `--type TYPE` | `a.x, b.y` | types (repeatable) |\n"
        "| `--keep, --no-keep` | off | k |\n"
        "| `--wait, --no-wait` | on |  |"
    )


def test_a_path_inside_the_checkout_is_shown_relative_to_it() -> None:
    command = click.Command(
        "tool",
        params=[
            click.Option(["--dir"], type=click.Path(path_type=Path), default=REPO_ROOT / "terraform", help="root"),
            click.Option(["--model"], default="/opt/models/small", help="model"),
        ],
    )

    lines = _table(command).splitlines()
    assert lines[-2] == "| `--dir DIR` | `terraform/` | root |"
    assert lines[-1] == "| `--model MODEL` | `/opt/models/small` | model |"


def test_subcommands_get_a_section_each() -> None:
    @click.group("python launcher")
    @click.option("--region", default="us-east-1", help="AWS region")
    def group(region: str) -> None:
        pass

    @group.command("status", short_help="show the workers")
    @click.option("--bucket", help="a bucket (default: terraform output)")
    def status(bucket: str) -> None:
        pass

    @group.command("destroy", short_help="tear down")
    def destroy() -> None:
        pass

    @group.command("download", short_help="copy the batch")
    @click.argument("directory", required=False, metavar="[DIR]")
    @click.option("--logs", is_flag=True, help="copy the logs too")
    def download(directory: str, logs: bool) -> None:
        pass

    download.params[0].help = "where (default: songs)"

    assert _table(group) == (
        "| Option | Default | Meaning |\n"
        "|---|---|---|\n"
        "| `--region REGION` | `us-east-1` | AWS region |\n"
        "\n"
        "### `python launcher destroy`\n"
        "\n"
        "tear down\n"
        "\n"
        "### `python launcher download`\n"
        "\n"
        "copy the batch\n"
        "\n"
        "| Option | Default | Meaning |\n"
        "|---|---|---|\n"
        "| `[DIR]` | songs | where |\n"
        "| `--logs` |  | copy the logs too |\n"
        "\n"
        "### `python launcher status`\n"
        "\n"
        "show the workers\n"
        "\n"
        "| Option | Default | Meaning |\n"
        "|---|---|---|\n"
        "| `--bucket BUCKET` | terraform output | a bucket |"
    )


def test_the_terraform_table_shows_types_defaults_and_required_variables(tmp_path: Path) -> None:
    variables = tmp_path / "variables.tf"
    variables.write_text(
        """
variable "instance_types" {
  description = "GPU types | in order of preference."
  type        = list(string)
  default     = ["g4dn.xlarge"]
}

variable "git_repo_url" {
  description = "HTTPS URL."
  type        = string
}

variable "tags" {
  description = "Extra tags."
  type        = map(string)
  default     = {}
}

variable "keep_alive" {
  description = "Keep the instance."
  type        = bool
  default     = false

  validation {
    condition     = var.keep_alive != null
    error_message = "keep_alive must be set."
  }
}

variable "zones" {
  description = "Zones, e.g. [\\"us-east-1a\\"]; a \\\\ stays."
  type        = list(string)
  default     = []
}

variable "region" {
  description = "AWS region."
  type        = string
  default     = "us-east-1"
}
"""
    )
    assert docs.variables_markdown(variables) == (
        "| Variable | Type | Default | Description |\n"
        "|---|---|---|---|\n"
        '| `instance_types` | `list(string)` | `["g4dn.xlarge"]` | GPU types \\| in order of preference. |\n'
        "| `git_repo_url` | `string` | required | HTTPS URL. |\n"
        "| `tags` | `map(string)` | `{}` | Extra tags. |\n"
        "| `keep_alive` | `bool` | `false` | Keep the instance. |\n"
        '| `zones` | `list(string)` | `[]` | Zones, e.g. ["us-east-1a"]; a \\ stays. |\n'
        '| `region` | `string` | `"us-east-1"` | AWS region. |'
    )


def test_fill_replaces_only_what_is_between_the_markers() -> None:
    text = f"# Title\n\n{docs.begin_marker('t')}\nold\nrows\n{docs.end_marker('t')}\n\nProse.\n"
    once = docs.fill(text, "t", "| new |")
    assert once == f"# Title\n\n{docs.begin_marker('t')}\n\n| new |\n\n{docs.end_marker('t')}\n\nProse.\n"
    assert docs.fill(once, "t", "| new |") == once


@pytest.mark.parametrize(
    "text",
    [
        "no markers at all\n",
        f"{docs.begin_marker('t')}\nonly the beginning\n",
        f"{docs.begin_marker('t')}\n{docs.end_marker('t')}\n{docs.begin_marker('t')}\n",
    ],
)
def test_fill_refuses_a_file_without_exactly_one_pair_of_markers(text: str) -> None:
    with pytest.raises(docs.MarkerError, match="exactly one pair of markers"):
        docs.fill(text, "t", "x")


def test_check_names_each_stale_file_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "docs").mkdir()
    for relative, sections in docs.SECTIONS.items():
        markers = "\n".join(f"{docs.begin_marker(n)}\n{docs.end_marker(n)}" for n in sections)
        (tmp_path / relative).write_text(f"# Doc\n\n{markers}\n")
    before = {path: path.read_text() for path in (tmp_path / "docs").iterdir()}

    assert docs.main(["--check"], root=tmp_path) == 1
    assert {path: path.read_text() for path in (tmp_path / "docs").iterdir()} == before
    assert capsys.readouterr().err.splitlines() == [
        f"{relative} is stale: run make docs" for relative in docs.SECTIONS
    ]

    assert docs.main([], root=tmp_path) == 0
    assert capsys.readouterr().out.splitlines() == [f"updated {r}" for r in docs.SECTIONS]
    assert docs.main(["--check"], root=tmp_path) == 0
    assert "| `--prompts PROMPTS` |" in (tmp_path / "docs/worker.md").read_text()


def test_a_file_that_lost_its_markers_is_an_error_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "docs").mkdir()
    for relative in docs.SECTIONS:
        (tmp_path / relative).write_text("# Doc without markers\n")
    assert docs.main([], root=tmp_path) == 2
    assert capsys.readouterr().err.startswith("error: docs/worker.md: needs exactly one pair")


# ---------------------------------------------------------------------------------------------
# Links between the pages: README.md and docs/*.md


def _documents() -> list[Path]:
    return [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]


_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_INLINE_CODE = re.compile(r"`+[^`]*`+")
_LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks, where a `#` starts a heading and `](` a link."""
    lines, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: its text without Markdown, lower case, every character
    other than a letter, digit, `_`, `-` or space dropped, spaces turned into `-`."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link counts by its text
    text = text.replace("`", "")
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading's anchor; a repeated one gets -1, -2, ... as on GitHub."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in _prose_lines(text):
        match = _HEADING.match(line)
        if match:
            base = github_anchor(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def relative_links(text: str) -> list[str]:
    links = []
    for line in _prose_lines(text):
        for target in _LINK.findall(_INLINE_CODE.sub("", line)):
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
                links.append(target)
    return links


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("What happens when…", "what-happens-when"),
        ("`python launcher status` for the group", "python-launcher-status-for-the-group"),
        ("Session Manager: enable_ssm", "session-manager-enable_ssm"),
        ("1. Build the worker AMI (once per model or dependency change)",
         "1-build-the-worker-ami-once-per-model-or-dependency-change"),
        ("prompts.txt", "promptstxt"),
        ("Throughput on the [CPU](x.md)", "throughput-on-the-cpu"),
    ],
)
def test_github_anchor(heading: str, anchor: str) -> None:
    assert github_anchor(heading) == anchor


def test_headings_in_code_blocks_and_repeats_are_counted_as_github_does() -> None:
    text = "# Title\n\n## Tests\n\n```console\n# a shell comment\n```\n\n## Tests\n"
    assert anchors(text) == {"title", "tests", "tests-1"}
    assert relative_links("[a](b.md#c) `[x](y.md)` [web](https://example.com) [s](#d)\n") == [
        "b.md#c",
        "#d",
    ]


@pytest.mark.parametrize("document", _documents(), ids=lambda p: p.relative_to(REPO_ROOT).as_posix())
def test_every_relative_link_points_to_an_existing_file_and_heading(document: Path) -> None:
    broken = []
    for link in relative_links(document.read_text(encoding="utf-8")):
        path, _, anchor = link.partition("#")
        target = (document.parent / path).resolve() if path else document
        if not target.exists():
            broken.append(f"{link}: no file {target.relative_to(REPO_ROOT) if target.is_relative_to(REPO_ROOT) else target}")
        elif anchor and target.suffix == ".md" and anchor not in anchors(target.read_text(encoding="utf-8")):
            broken.append(f"{link}: no heading with the anchor #{anchor}")
    assert not broken, f"{document.relative_to(REPO_ROOT)}:\n" + "\n".join(broken)


def test_the_readme_stays_a_front_page() -> None:
    lines = (REPO_ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) < 220, f"README.md has {len(lines)} lines; move detail into docs/"
