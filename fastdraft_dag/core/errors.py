"""Errors every layer may raise."""


class ConfigError(ValueError):
    """A setting is invalid; the message names the setting, its value and what is allowed."""
