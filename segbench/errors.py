"""Errors reported to users as one message, without a traceback."""


class InputError(Exception):
    """Bad input: the message names the file or field at fault."""


class PretrainedWeightsUnavailable(RuntimeError):
    """ImageNet weights could not be downloaded and no local copy was found."""
