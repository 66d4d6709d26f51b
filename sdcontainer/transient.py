"""`sdcontainer run`: the same container path without a file, as a transient service.

Like `systemd-run`, it asks the service manager over D-Bus (StartTransientUnit) for a
service whose ExecStart is the launcher, so even an ad-hoc container is a unit with a
cgroup, a journal and `systemctl status`.
"""

from __future__ import annotations

import _socket
import os
import select
import struct
import sys
from collections.abc import Callable, Iterable
from typing import Any

from sdcontainer.errors import SystemdError
from sdcontainer.record import replace
from sdcontainer.service import Setting, launcher_command, service_policy
from sdcontainer.spec import ContainerSpec
from sdcontainer.text import SIGNALS
from sdcontainer.unitfile import parse_boolean, split_words
from sdcontainer.values import ULIMIT_SETTINGS, size_in_bytes


def unit_name(requested: str | None) -> str:
    name = requested or f"sdcontainer-run-{os.urandom(4).hex()}"
    return name if name.endswith(".service") else name + ".service"


# --- the service policy as D-Bus properties ---------------------------------------------------

INFINITY = 2**64 - 1  # what D-Bus carries for "infinity" in these properties


def _string(value: str) -> bytes:
    return value.encode()


def _words(value: str) -> list[bytes]:
    return [word.encode() for word in split_words(value)]


def _command(value: str) -> list[tuple[bytes, list[bytes], bool]]:
    """An Exec*= line: (path, argv, ignore failure). Its `$$` stay doubled: systemd expands
    $VAR in the arguments at exec time, for a transient unit as for a unit file."""
    argv = _words(value)
    return [(argv[0], argv, False)]


def _device(value: str) -> list[tuple[bytes, bytes]]:
    device, _, access = value.partition(" ")
    return [(device.encode(), access.encode())]


def _seconds(value: str) -> int:
    return int(value) * 1_000_000  # the policy writes whole seconds


def _exit_statuses(value: str) -> tuple[list[int], list[int]]:
    return [int(status) for status in value.split()], []  # (exit statuses, signals)


def _number(value: str) -> int:
    return INFINITY if value == "infinity" else size_in_bytes(value)


def _hard_limit(value: str) -> int:
    soft, _, hard = value.partition(":")
    return _number(hard or soft)


def _soft_limit(value: str) -> int:
    return _number(value.partition(":")[0])


def _credential(value: str) -> list[tuple[bytes, bytes]]:
    """LoadCredential=ID:PATH, and SetCredential=ID:VALUE with VALUE's C escapes decoded
    (Secret='s fallback \\x00: never a secret's value)."""
    name, _, rest = value.partition(":")
    return [(name.encode(), rest.encode("latin-1", "backslashreplace").decode("unicode_escape").encode("latin-1"))]


Conversion = tuple[bytes, bytes, Callable[[str], Any]]  # D-Bus property, signature, converter

#: Each setting of the service policy (sdcontainer.service), as the D-Bus properties it
#: becomes (org.freedesktop.systemd1(5)). A property whose signature is an array collects
#: the values of every line of its setting (DeviceAllow=).
PROPERTIES: dict[str, tuple[Conversion, ...]] = {
    "Type": ((b"Type", b"s", _string),),
    "NotifyAccess": ((b"NotifyAccess", b"s", _string),),
    "KillMode": ((b"KillMode", b"s", _string),),
    "Delegate": ((b"Delegate", b"b", parse_boolean),),
    "DevicePolicy": ((b"DevicePolicy", b"s", _string),),
    "DeviceAllow": ((b"DeviceAllow", b"a(ss)", _device),),
    "SyslogIdentifier": ((b"SyslogIdentifier", b"s", _string),),
    "Slice": ((b"Slice", b"s", _string),),
    "TimeoutStopSec": ((b"TimeoutStopUSec", b"t", _seconds),),
    "SuccessExitStatus": ((b"SuccessExitStatus", b"(aiai)", _exit_statuses),),
    "KillSignal": ((b"KillSignal", b"i", SIGNALS.__getitem__),),
    "MemoryMax": ((b"MemoryMax", b"t", _number),),
    "TasksMax": ((b"TasksMax", b"t", _number),),
    # LimitNOFILE=SOFT:HARD: the hard limit in LimitNOFILE, the soft one in LimitNOFILESoft
    **{
        limit: ((limit.encode(), b"t", _hard_limit), (f"{limit}Soft".encode(), b"t", _soft_limit))
        for limit in ULIMIT_SETTINGS.values()
    },
    "ExecReload": ((b"ExecReload", b"a(sasb)", _command),),
    "PrivateNetwork": ((b"PrivateNetwork", b"b", parse_boolean),),
    "ExecStart": ((b"ExecStart", b"a(sasb)", _command),),
    "ExecStopPost": ((b"ExecStopPost", b"a(sasb)", _command),),
    "RuntimeDirectory": ((b"RuntimeDirectory", b"as", _words),),
    "LoadCredential": ((b"LoadCredential", b"a(ss)", _credential),),
    "SetCredential": ((b"SetCredential", b"a(say)", _credential),),
}

#: The properties only a transient unit has, and their signatures.
TRANSIENT_ONLY = {
    b"Description": b"s",  # a unit file's comes from the file's own [Unit]
    # attached (`sdcontainer run` without -d): the caller's stdin, stdout and stderr, and a
    # reference that keeps the unit loaded until its exit status has been read
    b"AddRef": b"b",
    b"CollectMode": b"s",
    b"StandardInputFileDescriptor": b"h",
    b"StandardOutputFileDescriptor": b"h",
    b"StandardErrorFileDescriptor": b"h",
}

SIGNATURES = {name: signature for conversions in PROPERTIES.values() for name, signature, _ in conversions}
SIGNATURES.update(TRANSIENT_ONLY)


def dbus_properties(settings: Iterable[Setting]) -> dict[bytes, Any]:
    """Unit-file settings as D-Bus properties; a setting PROPERTIES does not know is an
    error here, so the two renderings cannot drift apart unnoticed."""
    properties: dict[bytes, Any] = {}
    for name, value in settings:
        conversions = PROPERTIES.get(name)
        if conversions is None:
            raise LookupError(f"{name}= has no D-Bus property: add it to transient.PROPERTIES")
        for prop, signature, convert in conversions:
            if signature.startswith(b"a"):
                properties.setdefault(prop, []).extend(convert(value))
            else:
                properties[prop] = convert(value)
    return properties


SYSTEMD = "org.freedesktop.systemd1"
MANAGER_PATH = "/org/freedesktop/systemd1"
MANAGER = "org.freedesktop.systemd1.Manager"
UNIT = "org.freedesktop.systemd1.Unit"
SERVICE = "org.freedesktop.systemd1.Service"
PROPERTIES_INTERFACE = "org.freedesktop.DBus.Properties"
WAIT_USEC = 1_000_000  # an upper bound between state checks; signals wake us earlier
SYSTEM_BUS = "unix:path=/run/dbus/system_bus_socket"  # sd-bus's default, as systemd-run's


def _namespace_package(name: str) -> None:
    """Make `name` importable as a bare package whose __init__.py does not run (pystemd's
    imports every high-level wrapper and lxml, 20-50 ms here)."""
    if name in sys.modules:
        return
    import importlib.util
    import types

    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemdError(f"{name} is not installed")
    package = types.ModuleType(name)
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules[name] = package


# --- the D-Bus wire format (the D-Bus specification, "Message Protocol") ---------------------
#
# `sdcontainer run` says a handful of things to systemd: StartTransientUnit, then it waits
# for the unit's PropertiesChanged signals. That takes a few hundred lines of protocol in
# pure Python over `_socket`, where a client library costs more to import than the whole
# conversation takes (pystemd's sd-bus binding: ~6 ms, and a round trip per property read).

_ALIGNMENT = {"y": 1, "b": 4, "n": 2, "q": 2, "i": 4, "u": 4, "x": 8, "t": 8, "d": 8, "h": 4,
              "s": 4, "o": 4, "g": 1, "a": 4, "(": 8, "{": 8, "v": 1}  # fmt: skip
_FIXED = {"y": "B", "b": "I", "n": "h", "q": "H", "i": "i", "u": "I", "x": "q", "t": "Q", "d": "d", "h": "I"}


def _type_end(signature: str, i: int) -> int:
    """The end of the single complete type that starts at signature[i]."""
    c = signature[i]
    if c == "a":
        return _type_end(signature, i + 1)
    if c in "({":
        close = ")" if c == "(" else "}"
        i += 1
        while signature[i] != close:
            i = _type_end(signature, i)
        return i + 1
    if c not in _ALIGNMENT:
        raise ValueError(f"D-Bus signature {signature!r}: unknown type {c!r}")
    return i + 1


def _types(signature: str) -> list[str]:
    """A signature split into its complete types: "sa{sv}as" -> ["s", "a{sv}", "as"]."""
    types, i = [], 0
    while i < len(signature):
        end = _type_end(signature, i)
        types.append(signature[i:end])
        i = end
    return types


def _put(out: bytearray, kind: str, value: Any) -> None:
    """Append `value` as D-Bus type `kind` (offsets count from the message's start, which
    each buffer here is, or from the 8-aligned start of the body)."""
    c = kind[0]
    out += bytes(-len(out) % _ALIGNMENT[c])
    if c in _FIXED:
        out += struct.pack("<" + _FIXED[c], value)
    elif c in "sog":
        data = value.encode() if isinstance(value, str) else bytes(value)
        out += (bytes([len(data)]) if c == "g" else struct.pack("<I", len(data))) + data + b"\0"
    elif c == "v":
        signature, inner = value
        _put(out, "g", signature)
        _put(out, signature, inner)
    elif c == "a":
        element = kind[1:]
        at = len(out)
        out += bytes(4)
        out += bytes(-len(out) % _ALIGNMENT[element[0]])  # the length counts from after this
        first = len(out)
        for item in value.items() if element[0] == "{" else value:
            _put(out, element, item)
        struct.pack_into("<I", out, at, len(out) - first)
    else:  # a struct or a dict entry: a sequence of values
        for part_kind, part in zip(_types(kind[1:-1]), value, strict=True):
            _put(out, part_kind, part)


def _get(data: bytes, pos: int, kind: str, order: str) -> tuple[Any, int]:
    """Read one value of type `kind` at `pos` (`order`: "<" or ">"); the value and the next
    position. Strings, object paths and signatures come back as str, a{..} as a dict."""
    c = kind[0]
    pos += -pos % _ALIGNMENT[c]
    if c in _FIXED:
        fmt = order + _FIXED[c]
        value = struct.unpack_from(fmt, data, pos)[0]
        return (bool(value) if c == "b" else value), pos + struct.calcsize(fmt)
    if c in "so":
        size = struct.unpack_from(order + "I", data, pos)[0]
        return data[pos + 4 : pos + 4 + size].decode(errors="replace"), pos + 5 + size
    if c == "g":
        size = data[pos]
        return data[pos + 1 : pos + 1 + size].decode(), pos + 2 + size
    if c == "v":
        signature, pos = _get(data, pos, "g", order)
        return _get(data, pos, signature, order)
    if c == "a":
        size = struct.unpack_from(order + "I", data, pos)[0]
        element = kind[1:]
        pos += 4
        pos += -pos % _ALIGNMENT[element[0]]
        end = pos + size
        items = []
        while pos < end:
            item, pos = _get(data, pos, element, order)
            items.append(item)
        return (dict(items) if element[0] == "{" else items), end
    parts = []
    for part_kind in _types(kind[1:-1]):
        part, pos = _get(data, pos, part_kind, order)
        parts.append(part)
    return tuple(parts), pos


# message types and header fields
METHOD_CALL, METHOD_RETURN, ERROR, SIGNAL = 1, 2, 3, 4
PATH, INTERFACE, MEMBER, ERROR_NAME, REPLY_SERIAL, DESTINATION, SENDER, SIGNATURE, UNIX_FDS = range(1, 10)
_FIELD_TYPES = {PATH: "o", INTERFACE: "s", MEMBER: "s", ERROR_NAME: "s", DESTINATION: "s", SIGNATURE: "g"}


class Message:
    """A message read from the bus: its type, header fields and body (still packed)."""

    def __init__(self, data: bytes) -> None:
        self.order = "<" if data[0:1] == b"l" else ">"
        self.type = data[1]
        self.fields, header_end = _get(data, 12, "a(yv)", self.order)
        self.fields = dict(self.fields)
        self.body_start = header_end + (-header_end % 8)
        self.data = data

    def body(self) -> list[Any]:
        values, pos = [], self.body_start
        for kind in _types(self.fields.get(SIGNATURE, "")):
            value, pos = _get(self.data, pos, kind, self.order)
            values.append(value)
        return values


def encode_message(
    serial: int, path: str, interface: str, member: str, signature: str = "", args: tuple[Any, ...] = (), fds: int = 0
) -> bytes:
    """A method call to systemd (little-endian), ready to send."""
    body = bytearray()
    for kind, value in zip(_types(signature), args, strict=True):
        _put(body, kind, value)
    fields: list[tuple[int, tuple[str, Any]]] = [
        (PATH, ("o", path)),
        (MEMBER, ("s", member)),
        (DESTINATION, ("s", "org.freedesktop.DBus" if path == "/org/freedesktop/DBus" else SYSTEMD)),
    ]
    if interface:
        fields.append((INTERFACE, ("s", interface)))
    if signature:
        fields.append((SIGNATURE, ("g", signature)))
    if fds:
        fields.append((UNIX_FDS, ("u", fds)))
    header = bytearray(b"l" + bytes((METHOD_CALL, 0, 1)) + struct.pack("<II", len(body), serial))
    _put(header, "a(yv)", fields)
    header += bytes(-len(header) % 8)
    return bytes(header + body)


def object_path(prefix: str, name: str) -> str:
    """sd_bus_path_encode(): every byte but a letter (or a digit after the first) as _XX."""
    escaped = "".join(
        chr(b) if chr(b).isascii() and (chr(b).isalpha() or (i and chr(b).isdigit())) else f"_{b:02x}"
        for i, b in enumerate(name.encode())
    )
    return f"{prefix}/{escaped or '_'}"


class Bus:
    """A connection to the system bus (DBUS_SYSTEM_BUS_ADDRESS, as sd-bus reads it): SASL
    EXTERNAL, unix fds negotiated, Hello; method calls may be sent back to back and their
    replies collected later."""

    def __init__(self, address: str | None = None) -> None:
        self.sock = self._connect(address or os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") or SYSTEM_BUS)
        self.serial = 0
        self.buffer = b""
        self.replies: dict[int, Message] = {}
        self.signals: list[Message] = []
        uid = str(os.geteuid()).encode().hex()
        self.sock.sendall(f"\0AUTH EXTERNAL {uid}\r\nNEGOTIATE_UNIX_FD\r\nBEGIN\r\n".encode())
        self.hello = self.call("/org/freedesktop/DBus", "org.freedesktop.DBus", "Hello")
        answer = b""
        while answer.count(b"\r\n") < 2:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise SystemdError("the bus closed the connection while authenticating")
            answer += chunk
        lines = answer.split(b"\r\n", 2)
        if not lines[0].startswith(b"OK ") or lines[1] != b"AGREE_UNIX_FD":
            raise SystemdError(f"the bus refused us: {b' '.join(lines[:2]).decode(errors='replace')}")
        self.buffer = lines[2]

    @staticmethod
    def _connect(address: str) -> _socket.socket:
        errors = []
        for entry in address.split(";"):
            transport, _, options = entry.partition(":")
            keys = dict(item.partition("=")[::2] for item in options.split(","))
            if transport != "unix" or not ({"path", "abstract"} & set(keys)):
                errors.append(f"{entry}: not a unix:path= or unix:abstract= address")
                continue
            target = keys["path"] if "path" in keys else "\0" + keys["abstract"]
            sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
            try:
                sock.connect(target)
            except OSError as error:
                sock.close()
                errors.append(f"{entry}: {error.strerror}")
                continue
            return sock
        raise SystemdError(f"cannot connect to the system bus ({'; '.join(errors)})")

    def call(
        self, path: str, interface: str, member: str, signature: str = "", *args: Any, fds: tuple[int, ...] = ()
    ) -> int:
        """Send a method call; its serial, for reply()."""
        self.serial += 1
        message = encode_message(self.serial, path, interface, member, signature, args, len(fds))
        if fds:
            rights = [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))]
            sent = self.sock.sendmsg([message], rights)
            self.sock.sendall(message[sent:])
        else:
            self.sock.sendall(message)
        return self.serial

    def reply(self, serial: int, what: str) -> list[Any]:
        """Wait for the reply to `serial`: its body, or SystemdError naming `what`."""
        while serial not in self.replies:
            self._read(None)
        message = self.replies.pop(serial)
        if message.type == ERROR:
            body = message.body()
            detail = body[0] if body and isinstance(body[0], str) else message.fields.get(ERROR_NAME, "error")
            raise SystemdError(f"{what}: {detail}")
        return message.body()

    def next_signal(self, timeout: float | None) -> Message | None:
        """The next signal, or None if none came within `timeout` seconds."""
        while not self.signals:
            if not self._read(timeout):
                return None
        return self.signals.pop(0)

    def _read(self, timeout: float | None) -> bool:
        """Read what there is into messages; False when `timeout` passed with nothing."""
        while True:
            if len(self.buffer) >= 16:
                order = "<" if self.buffer[0:1] == b"l" else ">"
                body_size, _serial, fields_size = struct.unpack_from(order + "III", self.buffer, 4)
                size = 16 + fields_size + (-(16 + fields_size) % 8) + body_size
                if len(self.buffer) >= size:
                    message = Message(self.buffer[:size])
                    self.buffer = self.buffer[size:]
                    if message.type in (METHOD_RETURN, ERROR):
                        self.replies[message.fields.get(REPLY_SERIAL, 0)] = message
                    elif message.type == SIGNAL:
                        self.signals.append(message)
                    return True
            if timeout is not None and not select.select([self.sock], [], [], timeout)[0]:
                return False
            chunk = self.sock.recv(65536)
            if not chunk:
                raise SystemdError("the bus closed the connection")
            self.buffer += chunk

    def close(self) -> None:
        self.sock.close()


def transient_properties(
    spec: ContainerSpec,
    unit: str,
    *,
    stdio: tuple[int | None, int, int] | None,
    description: str | None,
    remove: bool = False,
) -> dict[bytes, Any]:
    """The unit's D-Bus properties: the service policy a generated unit has (but for its
    `unit_file_only` settings), and, with `stdio` (attached), the caller's
    stdin (None: /dev/null, systemd's StandardInput=null)/stdout/stderr and a reference that
    keeps the unit loaded until its exit status has been read. `remove` (detached): the
    unit goes when it stops even if it failed (by default a failed one stays, for ps -a,
    logs and rm)."""
    policy = service_policy(spec, launcher_command(), unit=unit)
    properties: dict[bytes, Any] = {
        b"Description": (description or f"sdcontainer run {' '.join(spec.command)}").encode(),
    }
    properties.update(dbus_properties(policy.both()))
    if stdio is not None:
        # Attached, like `systemd-run --wait`: the unit stays loaded while we hold a reference,
        # so its exit status can be read after it is gone, and is collected even if it failed.
        properties[b"AddRef"] = True
        properties[b"CollectMode"] = b"inactive-or-failed"
        for name, fd in zip(("Input", "Output", "Error"), stdio, strict=True):
            if fd is not None:
                properties[f"Standard{name}FileDescriptor".encode()] = fd
    elif remove:
        properties[b"CollectMode"] = b"inactive-or-failed"
    return properties


class _Unit:
    """One transient unit, watched over one bus connection: what its PropertiesChanged
    signals say (systemd sends the Service interface's first, then the Unit's, each with
    every property that emits changes), asked for explicitly only after a quiet second."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.path = object_path("/org/freedesktop/systemd1/unit", name)
        self.bus = Bus()
        self.job: int | None = None  # the unit's pending job, 0 for none; None: not known yet
        self.state: str | None = None  # its ActiveState
        self.service: Message | None = None  # the latest Service PropertiesChanged, parsed when needed
        rule = (
            f"type='signal',sender='{SYSTEMD}',path='{self.path}',"
            f"interface='{PROPERTIES_INTERFACE}',member='PropertiesChanged'"
        )
        self.setup = [
            self.bus.call("/org/freedesktop/DBus", "org.freedesktop.DBus", "AddMatch", "s", rule),
            self.bus.call(MANAGER_PATH, MANAGER, "Subscribe"),
        ]

    def start(self, properties: dict[bytes, Any]) -> None:
        """StartTransientUnit with `properties`; the fds among them travel with the call."""
        fds: list[int] = []
        args = []
        for name, value in properties.items():
            signature = SIGNATURES[name].decode()
            if signature == "h":
                fds.append(value)
                value = len(fds) - 1  # an index into the message's fds
            args.append((name.decode(), (signature, value)))
        serial = self.bus.call(
            MANAGER_PATH, MANAGER, "StartTransientUnit", "ssa(sv)a(sa(sv))", self.name, "fail", args, [],
            fds=tuple(fds),
        )  # fmt: skip
        self.bus.reply(self.bus.hello, "Hello")
        for setup in self.setup:
            self.bus.reply(setup, "subscribing to the unit's changes")
        self.bus.reply(serial, f"cannot start {self.name}")

    def _changed(self, message: Message) -> None:
        if message.fields.get(PATH) != self.path or message.fields.get(MEMBER) != "PropertiesChanged":
            return
        interface = _get(message.data, message.body_start, "s", message.order)[0]
        if interface == SERVICE:
            self.service = message
        elif interface == UNIT:
            _, changed, _ = message.body()
            if "Job" in changed:
                self.job = changed["Job"][0]
            if "ActiveState" in changed:
                self.state = changed["ActiveState"]

    def _ask(self) -> None:
        """The unit's job and state by Get (both calls sent before either answer is read)."""
        job = self.bus.call(self.path, PROPERTIES_INTERFACE, "Get", "ss", UNIT, "Job")
        state = self.bus.call(self.path, PROPERTIES_INTERFACE, "Get", "ss", UNIT, "ActiveState")
        self.job = self.bus.reply(job, "reading the unit's job")[0][0]
        self.state = self.bus.reply(state, "reading the unit's state")[0]

    def wait_until(self, done: Callable[[str], bool]) -> str:
        """Wait until no job is pending on the unit and `done(ActiveState)`; that state."""
        while True:
            if self.job == 0 and self.state is not None and done(self.state):
                return self.state
            message = self.bus.next_signal(WAIT_USEC / 1_000_000)
            if message is None:
                self._ask()  # a quiet second: ask, as a lost signal must not hang us
            else:
                self._changed(message)

    def outcome(self) -> tuple[int, int, str]:
        """ExecMainCode, ExecMainStatus and Result of the ended service."""
        wanted = ("ExecMainCode", "ExecMainStatus", "Result")
        changed = self.service.body()[1] if self.service is not None else {}
        if not all(name in changed for name in wanted):
            get = self.bus.call
            calls = {name: get(self.path, PROPERTIES_INTERFACE, "Get", "ss", SERVICE, name) for name in wanted}
            changed = {name: self.bus.reply(call, f"reading {name}")[0] for name, call in calls.items()}
        return int(changed["ExecMainCode"]), int(changed["ExecMainStatus"]), str(changed["Result"])

    def stop(self) -> None:
        try:  # noqa: SIM105 - a unit already gone needs no stop
            self.bus.reply(self.bus.call(self.path, UNIT, "Stop", "s", "replace"), "stop")
        except (SystemdError, OSError):
            pass

    def close(self) -> None:
        self.bus.close()


def run_transient(
    spec: ContainerSpec,
    unit: str,
    *,
    detach: bool,
    description: str | None = None,
    stdin: bool = True,
    remove: bool = False,
) -> int:
    """Start `spec` as the transient service `unit`. Attached (the default), the container
    gets this terminal's stdout/stderr (and its stdin, if `stdin`; else /dev/null) and the
    exit status is the container's; detached, return once the start job is done (like
    `systemctl start`), and with `remove` the unit goes even if it fails."""
    stem = unit[: -len(".service")]
    spec = replace(spec, unit=unit, name=spec.name if spec.name != "%N" else stem)
    stdio = None if detach else (sys.stdin.fileno() if stdin else None, sys.stdout.fileno(), sys.stderr.fileno())
    properties = transient_properties(spec, unit, stdio=stdio, description=description, remove=remove)
    try:
        transient = _Unit(unit)
    except (SystemdError, OSError) as error:
        hint = ""
        if not os.path.isdir("/run/systemd/system"):  # sd_booted(3)'s test
            hint = "; PID 1 is not systemd here: try it in a throwaway one with `sdcontainer try` (tools/shell)"
        raise SystemdError(f"cannot connect to systemd: {error}{hint}") from None
    try:
        try:
            transient.start(properties)
            if detach:
                state = transient.wait_until(lambda state: True)
                if state != "active":
                    print(f"sdcontainer: {unit} failed to start ({state}); see journalctl -u {unit}", file=sys.stderr)
                    return 125
                return 0
            try:
                transient.wait_until(lambda state: state in ("inactive", "failed"))
            except KeyboardInterrupt:  # Ctrl-C stops the container, then reports how it ended
                transient.stop()
                transient.wait_until(lambda state: state in ("inactive", "failed"))
            code, status, result = transient.outcome()
        except OSError as error:
            raise SystemdError(f"talking to systemd about {unit}: {error}") from None
    finally:
        transient.close()
    # siginfo codes: 1 = exited, 2 = killed, 3 = dumped
    if code == 1:
        return status
    if code in (2, 3):
        return 128 + status
    if result != "success":
        print(f"sdcontainer: {unit} failed to start ({result}); see journalctl -u {unit}", file=sys.stderr)
        return 125
    return status
