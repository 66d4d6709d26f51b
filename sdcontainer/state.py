"""The record a running container leaves in /run/sdcontainer/containers.

The launcher writes it once systemd knows the container's pid, `sdcontainer list` reads it,
and the unit's ExecStopPost= removes it. That cleanup runs at every stop, so this module
imports nothing beyond `os` and the error classes (the launcher's own imports cost ~8 ms).
"""

from __future__ import annotations

import os
import sys

from sdcontainer.errors import SdcontainerError, UsageError

RUN_DIR = "/run/sdcontainer"
STATE_DIR = f"{RUN_DIR}/containers"
HEALTH_DIR = f"{RUN_DIR}/health"  # consecutive failures of each unit's health check
PROG = "sdcontainer-launcher"


def state_path(unit: str) -> str:
    if not unit or "/" in unit or unit.startswith(".") or "%" in unit:
        raise UsageError(f"invalid unit name {unit!r}")
    return f"{STATE_DIR}/{unit}.json"


def to_json(value: object) -> str:
    """JSON for the few shapes a record has. The json module imports re and enum (~7 ms at
    every start); its C string encoder is all this needs."""
    from _json import encode_basestring_ascii

    if isinstance(value, str):
        return encode_basestring_ascii(value)
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(to_json(v) for v in value) + "]"
    if isinstance(value, dict):
        items = (f"{to_json(str(k))}: {to_json(v)}" for k, v in value.items())
        return "{\n " + ",\n ".join(items) + "\n}"
    raise TypeError(f"no JSON for {type(value).__name__}")


class _JSONContext:
    """What the C scanner of `_json` reads from json.JSONDecoder, without importing json
    (re and enum: ~7 ms on every start and health check)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo: dict[str, str] = {}

    @staticmethod
    def parse_constant(name: str) -> object:
        raise ValueError(f"{name} is not allowed in a record")


def from_json(text: str) -> object:
    """JSON text to Python with the json module's own C scanner (records here, image records
    and configs in the store); ValueError if it is not exactly one JSON value."""
    from _json import make_scanner

    scan = make_scanner(_JSONContext())  # type: ignore[arg-type]  # any object with these attributes
    start = len(text) - len(text.lstrip())
    try:
        value, end = scan(text, start)
    except StopIteration:
        raise ValueError("not JSON") from None
    if text[end:].strip():
        raise ValueError("extra data after the JSON value")
    return value


def read(unit: str) -> dict[str, object] | None:
    """The record of a running (or uncleanly ended) container, None if there is none."""
    try:
        with open(state_path(unit), encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return None
    try:
        record = from_json(text)
    except ValueError:
        return None  # cut short: being replaced right now
    return record if isinstance(record, dict) else None


def write(unit: str, record: dict[str, object]) -> None:
    """Atomically: a reader sees the old record, the new one, or none."""
    path = state_path(unit)
    os.makedirs(STATE_DIR, 0o755, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(to_json(record) + "\n")
    os.replace(tmp, path)


def cleanup(args: list[str]) -> int:
    """ExecStopPost: forget the container. Idempotent; what died with the namespaces (mounts,
    the overlay's upper layer, loopback) needs nothing."""
    if len(args) == 2 and args[0] == "--unit":
        unit = args[1]
    elif len(args) == 1 and args[0].startswith("--unit="):
        unit = args[0].partition("=")[2]
    else:
        raise UsageError("usage: cleanup --unit UNIT")
    for path in (state_path(unit), f"{HEALTH_DIR}/{unit}"):
        try:  # noqa: SIM105 - contextlib is one more import on the stop path
            os.unlink(path)
        except FileNotFoundError:
            pass  # already clean: a second stop, or a start that never got that far
    return 0


def main(argv: list[str] | None = None) -> int:
    """`sdcontainer-launcher cleanup ...` without loading the launcher."""
    args = sys.argv[1:] if argv is None else argv
    try:
        return cleanup(args[1:])
    except SdcontainerError as error:
        print(f"{PROG}: {error}", file=sys.stderr, flush=True)
        return error.exit_status
