"""One error hierarchy; the top level of every entry point maps it to an exit status."""

from __future__ import annotations

from sdcontainer.text import shown


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
