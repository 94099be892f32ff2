"""Errors that the CLI reports as one line (``digitlab: error: ...``) instead of a traceback."""


class DigitlabError(Exception):
    """Base of every error caused by bad input, missing files or a bad configuration."""


class DatasetError(DigitlabError):
    """A dataset is missing, unreadable, corrupt or asked for with an unknown name or split."""


class ModelError(DigitlabError):
    """An unknown model name or bad model arguments."""


class ConfigError(DigitlabError):
    """An unknown config key, a wrong type or an out-of-range value."""


class CheckpointError(DigitlabError):
    """A checkpoint is missing, incomplete or does not match the code."""
