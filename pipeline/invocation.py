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


def board_for_task(own: str | None, argv: list[str]) -> str | None:
    """The board a task should use: its own --board, else the one given to another task in the same command."""
    given = set(flag_values(argv, "--board"))
    if own:
        given.add(own)
    if len(given) > 1:
        raise PipelineError(f"conflicting boards on one command line: {', '.join(sorted(given))}",
                            field="--board", expected="one board for build, flash and run")
    return given.pop() if given else None


def tasks_named(argv: list[str], names: set[str]) -> set[str]:
    """Which of `names` (task names) appear on the command line."""
    return {token for token in argv if token in names}
