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


def close_match(name: str, known, list_known: bool = True) -> str:
    """The end of an 'unknown name' message: '; did you mean 'x'?', else '; known: a, b' (or '')."""
    import difflib

    close = difflib.get_close_matches(name, list(known), n=1)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; known: {', '.join(known)}" if list_known else ""
