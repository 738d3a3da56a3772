"""Errors caused by the user's input, reported as one clear message without a traceback."""


class UserError(Exception):
    """A mistake in a config, a file or a flag; the CLI prints it and exits non-zero."""


class ConfigError(UserError):
    """A config that fails validation; holds one line per problem, each naming its key path."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"invalid config {source}:\n{lines}")
