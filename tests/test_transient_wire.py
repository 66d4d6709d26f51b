"""`sdcontainer run` speaks D-Bus itself (sdcontainer.transient: marshalling, the message
header, object paths); dbus-fast, a dependency, gives a second opinion on the bytes. The
conversation with a real systemd is in the integration tests (test_integration.py)."""

from __future__ import annotations

from typing import Any

import pytest

from sdcontainer.transient import (
    MANAGER,
    MANAGER_PATH,
    PATH,
    SIGNAL,
    Message,
    _get,
    _put,
    _types,
    encode_message,
    object_path,
)

PROPERTIES = [
    ("Description", ("s", "sdcontainer run /bin/true")),
    ("Delegate", ("b", True)),
    ("DeviceAllow", ("a(ss)", [("/dev/null", "rwm"), ("char-pts", "rw")])),
    ("TimeoutStopUSec", ("t", 7_000_000)),
    ("SuccessExitStatus", ("(aiai)", ([130, 143], []))),
    ("KillSignal", ("i", 2)),
    ("ExecStart", ("a(sasb)", [("/bin/x", ["/bin/x", "a b", "$$HOME", "é"], False)])),
    ("RuntimeDirectory", ("as", ["sdcontainer/containers/x.service"])),
    ("StandardInputFileDescriptor", ("h", 0)),
    ("StandardOutputFileDescriptor", ("h", 1)),
]
BODY = ("x.service", "fail", PROPERTIES, [])


def _normal(value: Any) -> Any:
    """Tuples and lists alike, for comparing what two libraries return."""
    if isinstance(value, (list, tuple)):
        return [_normal(v) for v in value]
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    return getattr(value, "value", value) if type(value).__name__ == "Variant" else value


def test_types_split_a_signature() -> None:
    assert _types("ssa(sv)a(sa(sv))") == ["s", "s", "a(sv)", "a(sa(sv))"]
    assert _types("sa{sv}as") == ["s", "a{sv}", "as"]
    assert _types("(uo)i") == ["(uo)", "i"]
    with pytest.raises(ValueError):
        _types("s!")


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("y", 7), ("b", False), ("n", -2), ("q", 65535), ("i", -1), ("u", 2**32 - 1), ("x", -(2**40)),
        ("t", 2**64 - 1), ("d", 0.5), ("s", "naïve"), ("o", "/a/b"), ("g", "a{sv}"), ("as", ["", "x"]),
        ("a{sv}", {"A": ("s", "b"), "B": ("t", 3)}), ("(uo)", (0, "/")), ("a(sasb)", [("p", ["p", "q"], True)]),
        ("ay", []), ("a(yt)", [(1, 2), (3, 4)]),
    ],
)  # fmt: skip
def test_values_come_back_as_they_went(kind: str, value: Any) -> None:
    for prefix in (b"", b"\1", b"\1\2\3"):  # alignment counts from the start of the buffer
        out = bytearray(prefix)
        _put(out, kind, value)
        back, end = _get(bytes(out), len(prefix), kind, "<")
        expected = {k: v[1] for k, v in value.items()} if kind == "a{sv}" else value
        assert _normal(back) == _normal(expected)
        assert end == len(out)


def test_start_transient_unit_is_marshalled_as_dbus_fast_does() -> None:
    dbus_fast = pytest.importorskip("dbus_fast")
    from dbus_fast.signature import Variant

    ours = encode_message(5, MANAGER_PATH, MANAGER, "StartTransientUnit", "ssa(sv)a(sa(sv))", BODY, fds=2)
    body = [BODY[0], BODY[1], [[name, Variant(sig, value)] for name, (sig, value) in PROPERTIES], []]
    theirs = dbus_fast.Message(
        destination="org.freedesktop.systemd1", path=MANAGER_PATH, interface=MANAGER, member="StartTransientUnit",
        signature="ssa(sv)a(sa(sv))", body=body, serial=5, unix_fds=[0, 1],
    )._marshall(negotiate_unix_fd=True)  # fmt: skip
    ours_read, theirs_read = Message(ours), Message(theirs)
    assert ours[ours_read.body_start :] == theirs[theirs_read.body_start :]
    assert ours_read.fields == theirs_read.fields  # the same header fields, whatever their order
    assert len(ours) == len(theirs)


def test_a_signal_marshalled_by_dbus_fast_is_read() -> None:
    dbus_fast = pytest.importorskip("dbus_fast")
    from dbus_fast.signature import Variant

    path = object_path("/org/freedesktop/systemd1/unit", "web.service")
    changed = {"ActiveState": Variant("s", "inactive"), "Job": Variant("(uo)", [0, "/"])}
    data = dbus_fast.Message(
        message_type=dbus_fast.MessageType.SIGNAL, path=path, interface="org.freedesktop.DBus.Properties",
        member="PropertiesChanged", signature="sa{sv}as", body=["org.freedesktop.systemd1.Unit", changed, []],
        serial=9,
    )._marshall(negotiate_unix_fd=False)  # fmt: skip
    message = Message(data)
    assert message.type == SIGNAL and message.fields[PATH] == path
    interface, values, invalidated = message.body()
    assert interface == "org.freedesktop.systemd1.Unit" and invalidated == []
    assert values["ActiveState"] == "inactive" and list(values["Job"]) == [0, "/"]


def test_values_read_in_big_endian_too() -> None:
    """systemd writes little-endian here, but a message says its own byte order."""
    data = (3).to_bytes(4, "big") + "hé".encode() + b"\0" + (7).to_bytes(4, "big")
    assert _get(data, 0, "s", ">") == ("hé", 8)
    assert _get(data, 0, "(su)", ">") == (("hé", 7), 12)


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("web.service", "web_2eservice"),
        ("sdcontainer-run-1a2b.service", "sdcontainer_2drun_2d1a2b_2eservice"),
        ("1x.service", "_31x_2eservice"),
        ("", "_"),
        ("r:un.service", "r_3aun_2eservice"),
    ],
)
def test_object_paths_are_escaped_as_systemd_does(name: str, path: str) -> None:
    assert object_path("/org/freedesktop/systemd1/unit", name) == f"/org/freedesktop/systemd1/unit/{path}"


def test_fixed_width_values_refuse_what_does_not_fit() -> None:
    import struct

    with pytest.raises(struct.error):
        _put(bytearray(), "y", 256)
    assert _get(b"\x01\x00\x00\x00", 0, "b", "<") == (True, 4)
