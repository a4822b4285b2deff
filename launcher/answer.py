"""The question before anything changes: asked on the terminal, answered by --yes, or not asked
in a dry run."""

from __future__ import annotations

from types import SimpleNamespace

from launcher.deps import Console
from launcher.options import UsageError


def go_ahead(args: SimpleNamespace, out: Console, question: str, nothing: str) -> bool:
    """Whether to change something: not in a dry run, and --yes or the user's yes; otherwise
    says `nothing` (what was left as it was)."""
    if args.dry_run:
        out.say(f"Dry run: stopping before the question. {nothing}")
        return False
    if not confirmed(args, out, question):
        out.say(nothing)
        return False
    return True


def confirmed(args: SimpleNamespace, out: Console, question: str) -> bool:
    if args.yes:
        out.say(question + "yes (--yes)")
        return True
    if not out.stdin_is_tty:
        raise UsageError("stdin is not a terminal, so the launcher cannot ask; pass --yes")
    out.stdout.write(question)
    out.stdout.flush()
    try:
        answer = out.stdin.readline()
    except KeyboardInterrupt:
        out.say("")
        return False
    return answer.strip().lower() in ("y", "yes")


