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


ECHO_LIMIT = 60  # characters of a value quoted in an error line


def shorten(text: str, limit: int = ECHO_LIMIT) -> str:
    """`text` cut to `limit` characters (with "..."), so that an error line quoting a value stays one
    readable line however long the value is."""
    text = str(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."
