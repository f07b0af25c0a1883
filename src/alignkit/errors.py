"""The library's own exception types: every user-facing failure is one of these, with a message that says what to do."""


class AlignkitError(Exception):
    """Base class for every error alignkit raises on purpose."""


class DataError(AlignkitError):
    """A record or file is malformed. The message names file, line (or row) and field."""

    def __init__(self, message: str, *, source: str | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        self.source, self.line, self.field = source, line, field
        where = ""
        if source is not None:
            where = f"{source}:{line}: " if line is not None else f"{source}: "
        what = f"field '{field}': " if field else ""
        super().__init__(f"{where}{what}{message}")
        self.reason = message


class ConfigError(AlignkitError):
    """A configuration value is missing, of the wrong type, or out of range."""


class ModelError(AlignkitError):
    """A model could not be found or loaded."""


class RewardError(AlignkitError):
    """A reward function failed or returned something malformed. The message names the reward."""


class TrainingError(AlignkitError):
    """Training cannot continue (e.g. too many non-finite losses in a row)."""
