"""What every command shares: the options that find the deployment (--region, --terraform-dir,
--var), those of the batch (--prompts, --max-price, --bucket), the command class that
refuses stray arguments in the launcher's words, and the steps before any command runs: the
variables --var may set, and the region."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click
from botocore.parsers import ResponseParserError

from contract.defaults import DEFAULT_MAX_PRICE, MAX_PRICE_USD_PER_HOUR
from contract.values import quoted
from launcher import deployment, region
from launcher.deps import Deps
from launcher.options import (
    COMMANDS,
    PROG,
    REGION_NAME,
    REPO_ROOT,
    TERRAFORM_DIR_VARIABLE,
    UsageError,
    default_terraform_dir,
)
from launcher.tf import declared_variables
from launcher.validate import Bounded, Bucket, Pattern, Place, Variable, extra_variables

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]
# -h as well as --help; extra arguments reach LauncherCommand, which names what is wrong.
CONTEXT = {"help_option_names": ["-h", "--help"], "allow_extra_args": True, "max_content_width": 100}


class LauncherCommand(click.Command):
    """A command whose stray arguments are refused in the launcher's words: a command name given
    after options, or a folder to a command that takes none."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        rest = super().parse_args(ctx, args)
        if ctx.args:
            raise click.UsageError(unexpected(ctx.args[0], self.name or ""), ctx)
        return rest


class Argument(click.Argument):
    """An argument with a help text, which click.argument() does not take: the command's help
    lists it under its positional arguments, and the docs' table shows it."""

    def __init__(self, *args: Any, help: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help = help


def unexpected(argument: str, command: str) -> str:
    if argument in COMMANDS:
        return f"the command comes first: {PROG} {argument} [OPTIONS]"
    if command == "download":
        return f"unexpected argument {quoted(argument)} (download takes one DIR)"
    return f"unexpected argument {quoted(argument)} (only download takes a DIR)"


def command(name: str, summary: str) -> Decorator:
    """A command whose help is its one-line summary, the one the command list shows."""
    return click.command(
        name,
        cls=LauncherCommand,
        help=summary,
        short_help=summary,
        context_settings=CONTEXT,
    )


def stacked(*decorators: Decorator) -> Decorator:
    """The decorators as one, the first one's option first in the help."""

    def apply(function: Callable[..., Any]) -> Callable[..., Any]:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


# --region, --terraform-dir and --var: every command finds the deployment the same way.
common_options = stacked(
    click.option(
        "--region",
        type=Pattern(REGION_NAME, "an AWS region such as us-east-1", lower=True),
        metavar="REGION",
        help=(
            "AWS region for prices, workers and terraform (default: boto3's: "
            "$AWS_DEFAULT_REGION, else the profile's region; else $AWS_REGION, else "
            f"{region.DEFAULT_REGION}); the checks before launch show where it came from"
        ),
    ),
    click.option(
        "--terraform-dir",
        type=Place(),
        envvar=TERRAFORM_DIR_VARIABLE,
        metavar="PATH",
        help=(
            f"terraform root configuration and its state (default: "
            f"${TERRAFORM_DIR_VARIABLE}, else the terraform/ folder installed with the "
            "launcher: the checkout's own from a checkout or an editable install)"
        ),
    ),
    click.option(
        "--var",
        "variables",
        type=Variable(),
        multiple=True,
        metavar="KEY=VALUE",
        help=(
            "extra terraform variable, repeatable, e.g. ami_id, bucket_name, model_path, "
            "batch_size, audio_format, force_destroy, root_volume_size_gb (docs/deploy.md "
            "lists them); refused: a name terraform/variables.tf does not declare, "
            "variables with an option of their own (such as max_price), "
            "availability_zones (the launcher sets it) and the replaced instance_type, "
            "availability_zone and shutdown_when_done"
        ),
    ),
)


def bucket_option(use: str) -> Decorator:
    return click.option(
        "--bucket",
        type=Bucket(),
        metavar="BUCKET",
        help=(
            f"bucket {use}: NAME, NAME/PREFIX or s3://NAME/PREFIX; read only, it does not "
            "rename the bucket terraform creates (default: the bucket_name terraform output, "
            "or --var bucket_name=...)"
        ),
    )


# --prompts and --max-price: what launch and status know of the batch and its price.
batch_options = stacked(
    click.option(
        "--prompts",
        type=Place(),
        default="prompts.txt",
        metavar="FILE",
        help="prompts file, parsed exactly as the worker parses it (default: prompts.txt)",
    ),
    click.option(
        "--max-price",
        # The worker refuses an hourly cost above the same bound, and terraform's max_price too.
        type=Bounded(float, 0, MAX_PRICE_USD_PER_HOUR, " USD/h", above=True),
        default=DEFAULT_MAX_PRICE,
        metavar="USD",
        help=(
            f"spot max price in USD per hour per instance, above 0 and at most "
            f"{MAX_PRICE_USD_PER_HOUR:g} (the worker's bound); the estimate and the "
            "cost-so-far figures use it as the hourly rate, except for a running spot worker, "
            "whose own spot request price counts where AWS reports one "
            f"(default: {DEFAULT_MAX_PRICE:.2f})"
        ),
    ),
)


def prepared(name: str, params: dict[str, Any], deps: Deps) -> tuple[SimpleNamespace, dict[str, str]]:
    """The command's options as attributes, with the terraform folder and the region resolved,
    and the --var variables checked against what the configuration declares."""
    args = SimpleNamespace(command=name, **params)
    args.terraform_dir = Path(args.terraform_dir) if args.terraform_dir else default_terraform_dir()
    declared, source = _declared(args.terraform_dir)
    extra_vars = extra_variables(list(args.variables), declared, source)
    chosen = region.resolve_region(args.region, deps.session_region(), os.environ)
    args.region, args.region_source = chosen.name, chosen.source
    return args, extra_vars


def _declared(terraform_dir: Path) -> tuple[dict[str, str], str]:
    """The variables --var may set: those the configuration in --terraform-dir declares, or,
    before that folder holds one, those of the configuration installed with the launcher."""
    try:
        declared = declared_variables(terraform_dir)
    except OSError:
        declared = {}
    if declared:
        return declared, deployment.folder_shown(terraform_dir) + "*.tf"
    shipped = default_terraform_dir()
    shown = "terraform/variables.tf" if shipped == REPO_ROOT / "terraform" else str(shipped / "variables.tf")
    return declared_variables(shipped), shown


@contextmanager
def aws_answers(args: SimpleNamespace) -> Iterator[None]:
    """An answer that is not AWS's XML or JSON (a proxy's or captive portal's page, or an
    endpoint, such as an emulator, that does not serve the region or the call) as one line
    naming the region it came from."""
    try:
        yield
    except ResponseParserError as exc:
        raise UsageError(
            f"AWS: an answer in region {args.region} could not be read "
            f"({str(exc).splitlines()[0]}); check --region, AWS_ENDPOINT_URL and any proxy "
            "(HTTPS_PROXY) between you and AWS"
        ) from None
