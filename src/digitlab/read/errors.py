"""The one error type of the reading pipeline; the CLI prints it as one line."""

from digitlab.errors import DigitlabError


class ReadError(DigitlabError):
    """An image that cannot be read (missing, not an image, truncated, too large) or a bad reading setup."""
