"""Errors that mean "the input is wrong", reported to users without a traceback."""


class InputError(Exception):
    """Bad input: the message names the file or field at fault."""
