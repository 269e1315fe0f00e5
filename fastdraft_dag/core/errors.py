"""Errors every layer may raise."""


class InputError(ValueError):
    """Bad input a user can fix (a setting, a file, an id): the message names the input and
    what is allowed. The CLI prints it as one line (exit 2); `--debug` shows the traceback."""


class ConfigError(InputError):
    """A setting is invalid; the message names the setting, its value and what is allowed."""
