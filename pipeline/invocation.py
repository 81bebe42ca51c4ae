"""What the whole `invoke` command line asked for. Invoke hands a flag only to the task it follows, so in
`invoke build flash --board k210` the build task would not see the board; tasks that must agree on the board
read it from the command line through this module."""

from __future__ import annotations

from pipeline.errors import PipelineError


def flag_values(argv: list[str], flag: str) -> list[str]:
    """Every value given to `--flag` (as `--flag V` or `--flag=V`) anywhere on the command line."""
    values = []
    for index, token in enumerate(argv):
        if token == flag and index + 1 < len(argv):
            values.append(argv[index + 1])
        elif token.startswith(flag + "="):
            values.append(token.split("=", 1)[1])
    return values


def shared_value(own: str | None, argv: list[str], flag: str) -> str | None:
    """A task's value for `flag`: its own, else the one given to another task in the same command; two different
    values on one command line are refused."""
    given = set(flag_values(argv, flag))
    if own:
        given.add(own)
    if len(given) > 1:
        raise PipelineError(f"conflicting {flag} values on one command line: {', '.join(sorted(given))}",
                            field=flag, expected=f"one {flag} for every task of the command")
    return given.pop() if given else None


def board_for_task(own: str | None, argv: list[str]) -> str | None:
    """The board a task should use: its own --board, else the one given to another task in the same command."""
    return shared_value(own, argv, "--board")


def shared_settings(own: list[str] | None, argv: list[str]) -> list[str]:
    """Every `--set key=value` of the command line (given to any task), this task's own last so they win."""
    own = list(own or [])
    return [value for value in flag_values(argv, "--set") if value not in own] + own


def tasks_named(argv: list[str], names: set[str]) -> set[str]:
    """Which of `names` (task names) appear on the command line."""
    return {token for token in argv if token in names}
