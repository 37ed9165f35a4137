"""Errors a user can act on: each names the file or value and what is wrong with it."""


class CodegraphError(Exception):
    """Base class: the CLI prints these as one line without a traceback."""


class InputError(CodegraphError):
    """A file or folder given by the user cannot be used."""


class BatchTooSmallError(InputError):
    """Batch methods compare each image with the others; they need at least 3."""


class MemoryBudgetError(CodegraphError):
    """The run cannot fit the memory budget; the message says which knob to turn."""


class ConfigError(CodegraphError, ValueError):
    """A configuration value is out of its range; the message names the field and value."""
