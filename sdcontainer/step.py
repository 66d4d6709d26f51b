"""A step of the container's set-up that failed, as one line and an exit status.

`with Step("mount overlay on /"):` turns an OSError inside the block into a LaunchError that
reads `mount overlay on /: Invalid argument`; launch_error() makes one with any message and
status. The launcher (sdcontainer.launcher) and what it runs in the container's child
(sdcontainer.rootfs, sdcontainer.process) report failures this way, and the launcher's top
level turns them into the line on stderr and the exit status.
"""

from __future__ import annotations

from sdcontainer.errors import LaunchError, SdcontainerError, describe, reason

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


class Step:
    """Turns an OSError inside the block into a LaunchError that names the step:
    `mount overlay on /: Invalid argument`."""

    __slots__ = ("what", "status")

    def __init__(self, what: str, status: int = LaunchError.exit_status) -> None:
        self.what = what
        self.status = status

    def __enter__(self) -> Step:
        return self

    def __exit__(self, kind: object, error: BaseException | None, tb: object) -> None:
        if isinstance(error, OSError):
            raise launch_error(f"{self.what}: {reason(error)}", self.status) from error


def launch_error(message: str, status: int = LaunchError.exit_status) -> LaunchError:
    """A LaunchError with its own exit status (126 and 127 for exec, as a shell has them)."""
    error = LaunchError(message)
    error.exit_status = status
    return error


def outcome_in_child(run: Callable[[], int | None], status: int) -> tuple[int, str | None]:
    """In a forked child: run `run` and turn how it ended into an exit status and a message
    for the parent. `run` execs (never returns), returns a status of its own (then no
    message), or raises (then the message says why). Nothing escapes: the caller reports the
    pair on its pipe and _exits."""
    try:
        result = run()
    except SdcontainerError as error:
        return error.exit_status, str(error)
    except OSError as error:
        return status, describe(error)
    except BaseException as error:  # noqa: B036 - nothing may escape a forked child
        return status, f"internal error: {type(error).__name__}: {error}"
    return (status, "execve returned") if result is None else (result, None)
