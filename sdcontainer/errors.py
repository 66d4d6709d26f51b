"""One error hierarchy, and run_main(): the top level of every entry point (sdcontainer,
sdcontainer-generator, each verb of sdcontainer-launcher), which maps it to an exit status
and one line on stderr."""

from __future__ import annotations

import os
import sys

from sdcontainer.text import shown

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


class SdcontainerError(Exception):
    """Base class. The message is one line meant for a human; no traceback is shown."""

    exit_status = 1


class UsageError(SdcontainerError):
    """Bad command line."""

    exit_status = 2


class ConfigError(SdcontainerError):
    """A `.container` file (or drop-in) is malformed or uses a key we do not support.

    Carries the file and line so the message reads `path:line: message`, the form editors
    and admins know from compilers. A path that is not printable (a newline, a byte that is
    not UTF-8 in a name) is shown quoted and escaped: the message stays one line.
    """

    exit_status = 3

    def __init__(self, message: str, path: str | None = None, line: int | None = None) -> None:
        self.message = message
        self.path = path
        self.line = line
        super().__init__(self.__str__())

    def __str__(self) -> str:
        if self.path and self.line:
            return f"{shown(self.path)}:{self.line}: {self.message}"
        if self.path:
            return f"{shown(self.path)}: {self.message}"
        return self.message


# A file with this many errors is read no further: it is most likely no unit file at all, and
# a run of the generator at boot must not spend its time on one (nor flood the journal).
MAX_ERRORS = 20


class TooManyErrors(Exception):
    """An ErrorList is full: whoever collects stops there."""


class ErrorList(list[ConfigError]):
    """Every error of one file, for `sdcontainer check` and the generator's refusals: the
    checks that take one append each error they find to it and go on, instead of raising
    the first. Raises TooManyErrors once it holds `limit`."""

    def __init__(self, limit: int = MAX_ERRORS) -> None:
        super().__init__()
        self.limit = limit

    def append(self, error: ConfigError) -> None:
        super().append(error)
        if len(self) >= self.limit:
            raise TooManyErrors


class LaunchError(SdcontainerError):
    """Setting up or starting the container failed (missing rootfs, mount refused, exec failed)."""

    exit_status = 4


class SystemdError(SdcontainerError):
    """Talking to the service manager failed."""

    exit_status = 5


class ImageError(LaunchError):
    """An image could not be pulled, imported, unpacked or found (a bad layer, a failed pull,
    a name the store does not hold). A start that needs the image fails with it."""


class ExecError(SdcontainerError):
    """`sdcontainer exec` could not run the command in the container (no such container, it
    is not running, joining it failed). 125, as docker and podman exec use, so that the
    command's own statuses stay distinguishable."""

    exit_status = 125


class RecordError(SdcontainerError):
    """A running container's record (sdcontainer.state) cannot be used: damaged, of the wrong
    shape, or written by a newer sdcontainer. Callers that act on one container fail with
    it; those that go through all of them report it and go on."""


class NetworkError(LaunchError):
    """A container's network could not be set up: no free address, an address or a host port
    taken by another unit, a firewall change refused. The message names what and whom."""


def run_main(prog: str, main: Callable[[list[str]], int], args: list[str], os_error_status: int = 1) -> int:
    """The top level of every entry point (sdcontainer, sdcontainer-generator, each verb of
    sdcontainer-launcher): run `main(args)` and turn how it failed into one line on stderr,
    `PROG: message`, and an exit status.

      SdcontainerError      its message, its exit_status
      OSError               `FILE: reason`, os_error_status (the launcher's: LaunchError's 4)
      KeyboardInterrupt     no line, 130 (128 + SIGINT, as a shell has it)
      anything else         `internal error: TYPE: message`, 1: a bug
      SystemExit            passes through (click's own usage errors and `sys.exit(status)`)

    A BrokenPipeError is an OSError like any other. With SDCONTAINER_DEBUG set to a
    non-empty value, the Python traceback follows the line.
    """
    try:
        return main(args)
    except SystemExit:
        raise
    except BaseException as error:  # noqa: B036 - every failure ends as one line and a status
        return _report(prog, error, os_error_status)


def reason(error: OSError) -> str:
    """The error's text without Python's `[Errno N]` and file name: `Permission denied`."""
    return os.strerror(error.errno) if error.errno else str(error)


def describe(error: OSError) -> str:
    """`FILE: reason`, or the reason alone: `/srv/x: No such file or directory`."""
    return f"{error.filename}: {reason(error)}" if error.filename else reason(error)


def _report(prog: str, error: BaseException, os_error_status: int) -> int:
    if isinstance(error, SdcontainerError):
        message, status = str(error), error.exit_status
    elif isinstance(error, OSError):
        message, status = describe(error), os_error_status
    elif isinstance(error, KeyboardInterrupt):
        message, status = None, 130
    else:
        message = f"internal error: {type(error).__name__}: {error} (SDCONTAINER_DEBUG=1 shows more)"
        status = 1
    if message is not None:
        print(f"{prog}: {message}", file=sys.stderr, flush=True)
    if os.environ.get("SDCONTAINER_DEBUG"):
        import traceback

        traceback.print_exception(error)
    return status
