"""Errors reported to users as one message, without a traceback."""


class InputError(ValueError):
    """Bad input: the message names the file or field at fault.

    A ValueError, so that code that validates a value (a model's paper option, a CRF parameter)
    raises it to callers that expect one, while the CLI tells it apart from a bug's ValueError."""


class PretrainedWeightsUnavailable(RuntimeError):
    """ImageNet weights could not be downloaded and no local copy was found."""
