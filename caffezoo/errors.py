"""Errors a user can cause. Each message is one line that names the file or layer at fault;
the CLI prints it and exits non-zero without a traceback (unless --debug).

Exit status (docs/cli.md): 0 success; 1 a check failed (validate over its tolerance, doctor
missing a core component); 2 a usage error (argparse's own status, and options that are wrong
together or out of range); 3 a bad input (a file that is missing, malformed, or does not fit);
4 a missing or broken framework; 70 an internal error (a bug: one line, --debug shows the
traceback); 130 interrupted by Ctrl-C (143 SIGTERM, 129 SIGHUP: staged outputs are removed
first); 141 the reader of stdout went away (`| head`). docs/reliability.md."""

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_BAD_INPUT = 3
EXIT_DEPENDENCY = 4
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141


class CaffezooError(Exception):
    """Base class: a problem with the user's input or environment, not a bug. Raised as such,
    it is a usage error: options that are out of range or do not go together."""

    exit_code = EXIT_USAGE


class UsageError(CaffezooError):
    """Options that are out of range or do not go together (argparse cannot tell)."""


class InputFileError(CaffezooError):
    """A file is missing, unreadable or not what it should be (image, list, checkpoint)."""

    exit_code = EXIT_BAD_INPUT


class FormatError(CaffezooError):
    """A malformed prototxt (with line and column) or a truncated / non-Caffe binary."""

    exit_code = EXIT_BAD_INPUT


class NetDefinitionError(CaffezooError):
    """A net that cannot be built or inferred: unknown bottom, bad parameters, bad shapes."""

    exit_code = EXIT_BAD_INPUT


class WeightMismatchError(CaffezooError):
    """Weights that do not fit the net: missing or unexpected layers, wrong blob shapes."""

    exit_code = EXIT_BAD_INPUT


class ConversionError(CaffezooError):
    """A source model that cannot be converted exactly."""

    exit_code = EXIT_BAD_INPUT


class DependencyError(CaffezooError):
    """An optional framework (Caffe, OpenCV, torch, tensorflow, mxnet) is missing or broken."""

    exit_code = EXIT_DEPENDENCY


class BackendCrash(CaffezooError):
    """A runtime library (real Caffe) died on a net that caffezoo's checks let through: its
    process was a child, so this is reported instead of ending caffezoo."""

    exit_code = EXIT_BAD_INPUT


class ResourceError(CaffezooError):
    """A net or batch that would need more memory than this machine has available."""

    exit_code = EXIT_BAD_INPUT


class ValidationFailed(CaffezooError):
    """A converted model disagrees with its source beyond the tolerance."""

    exit_code = EXIT_CHECK_FAILED


def problem_list(problems: list[str], shown: int = 5) -> str:
    """"N problem(s): " and the first `shown` of them, then how many more: one readable line
    however many problems a file has (a caffemodel of another net has hundreds)."""
    head = "; ".join(problems[:shown])
    rest = len(problems) - shown
    return f"{len(problems)} problem(s): {head}" + (f"; and {rest} more" if rest > 0 else "")
