"""The launcher's entry: a click group whose default command is `launch`, so `musicgen-launcher
--dry-run` launches as `musicgen-launcher launch --dry-run` does; every refusal is one line on
stderr (exit 2), never a traceback or a usage block."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import click
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, ProfileNotFound
from click_default_group import DefaultGroup

from contract.values import quoted
from launcher.commands.download import download_command
from launcher.commands.launch import launch_command
from launcher.commands.status import status_command
from launcher.deps import Console, Deps
from launcher.options import COMMANDS, PROG, UsageError
from launcher.tf import TerraformError

__all__ = ["COMMANDS", "Console", "Deps", "cli", "main", "parse_args"]


class LauncherGroup(DefaultGroup):
    """The commands listed in the order they are used, launch first, without a mark: its
    summary says it is the default."""

    format_commands = click.Group.format_commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


@click.group(
    PROG,
    cls=LauncherGroup,
    default="launch",
    default_if_no_args=True,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    help=(
        "Runs a batch of MusicGen songs on AWS spot GPUs. The same command runs from the "
        "checkout as `python launcher` or `python -m launcher`."
    ),
    epilog=(
        f"Without a command, {PROG} launches: `{PROG} --dry-run` is `{PROG} launch --dry-run`. "
        f"`{PROG} COMMAND --help` lists a command's options. Exit status: 0 done (launched, "
        "declined, nothing to do), 1 terraform or a copy failed, 2 a usage, check or AWS error."
    ),
)
def cli() -> None:
    pass


for _command in (launch_command, status_command, download_command):
    cli.add_command(_command)


def main(argv: list[str] | None = None, deps: Deps | None = None) -> int:
    """Run the command `argv` names (launch when none) and return its exit status; every
    refusal, click's or the launcher's, is one `error:` line on stderr."""
    deps = deps or Deps.system()
    out = deps.console
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        return cli.main(args, prog_name=PROG, standalone_mode=False, obj=deps)
    except click.UsageError as exc:
        out.error(usage_message(exc))
        return 2
    except click.Abort:  # Ctrl-C or the end of input where click reads; 128 + SIGINT
        return 130
    except (UsageError, ProfileNotFound) as exc:
        out.error(str(exc))
        return 2
    except NoCredentialsError:
        out.error(
            "no AWS credentials found; configure them with `aws configure`, "
            "AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
        )
        return 2
    except (ClientError, BotoCoreError) as exc:
        out.error(f"AWS: {exc}")
        return 2
    except TerraformError as exc:
        out.error(str(exc))
        return 1


def usage_message(exc: click.UsageError) -> str:
    """click's refusal as one line in the launcher's words: an option of another command is
    named as such, a value's own message stands alone."""
    if isinstance(exc, click.NoSuchOption) and exc.ctx is not None:
        name = exc.ctx.command.name
        if any(_takes(other, exc.option_name) for other in cli.commands.values()):
            return f"{name} does not take {exc.option_name}"
        shown = exc.option_name if len(exc.option_name) <= 40 else quoted(exc.option_name)
        return f"unknown option {shown} (see {PROG} {name} --help)"
    if isinstance(exc, click.BadParameter) and exc.param is not None and exc.message:
        return exc.message
    return exc.format_message()


def _takes(command: click.Command, option: str) -> bool:
    return any(option in param.opts for param in command.params)


def parse_args(argv: list[str]) -> SimpleNamespace:
    """The options of the command `argv` names (launch when none), read and checked as the
    launcher reads them, without running it; UsageError with the launcher's line otherwise."""
    name = argv[0] if argv and argv[0] in COMMANDS else "launch"
    rest = argv[1:] if argv and argv[0] in COMMANDS else argv
    command = cli.commands[name]
    try:
        ctx = command.make_context(f"{PROG} {name}", list(rest))
    except click.UsageError as exc:
        raise UsageError(usage_message(exc)) from None
    return SimpleNamespace(command=name, **ctx.params)
