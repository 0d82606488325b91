"""Errors a user can cause. Each message is one line that names the file or layer at fault;
the CLI prints it and exits non-zero without a traceback (unless --debug)."""


class CaffezooError(Exception):
    """Base class: a problem with the user's input or environment, not a bug."""

    exit_code = 2


class InputFileError(CaffezooError):
    """A file is missing, unreadable or not what it should be (image, list, checkpoint)."""


class FormatError(CaffezooError):
    """A malformed prototxt (with line and column) or a truncated / non-Caffe binary."""


class NetDefinitionError(CaffezooError):
    """A net that cannot be built or inferred: unknown bottom, bad parameters, bad shapes."""


class WeightMismatchError(CaffezooError):
    """Weights that do not fit the net: missing or unexpected layers, wrong blob shapes."""


class ConversionError(CaffezooError):
    """A source model that cannot be converted exactly."""


class DependencyError(CaffezooError):
    """An optional framework (Caffe, OpenCV, torch, tensorflow, mxnet) is missing or broken."""


class ValidationFailed(CaffezooError):
    """A converted model disagrees with its source beyond the tolerance."""

    exit_code = 1
