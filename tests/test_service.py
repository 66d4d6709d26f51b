"""One service policy (sdcontainer.service), two renderings: the generator's unit text and
`sdcontainer run`'s D-Bus properties. For every golden file the policy is rendered both
ways; the [Service] lines of the generated unit (parsed back, the file's own lines set
aside) and the D-Bus properties (turned back into unit-file values by the independent
inverse below) must say the same thing, setting by setting."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sdcontainer.generator import Generated, find_sources, generate, load
from sdcontainer.keys import spec_from_argv
from sdcontainer.record import replace
from sdcontainer.service import ServicePolicy, Setting, exec_line, launcher_command, service_policy
from sdcontainer.transient import INFINITY, SIGNATURES, TRANSIENT_ONLY, dbus_properties, transient_properties
from sdcontainer.unitfile import parse_text, split_words
from sdcontainer.values import format_size

GOLDEN = Path(__file__).parent / "golden"
NAMES = sorted(p.name for p in GOLDEN.glob("*.container"))

# --- D-Bus properties back to unit-file values (written apart from transient.py on purpose) ---


def _amount(n: int, show: Callable[[int], str] = str) -> str:
    return "infinity" if n == INFINITY else show(n)


def _exec_words(words: list[str]) -> str:
    return repr(words)  # an Exec*= line is compared word by word, as systemd splits it


def as_settings(properties: dict[bytes, Any]) -> list[Setting]:
    """The unit-file lines the properties stand for, values in the form `canonical` gives."""
    lines: list[Setting] = []
    for key, value in properties.items():
        name = key.decode()
        if key in TRANSIENT_ONLY or name.endswith("Soft"):
            continue
        if name in ("Type", "NotifyAccess", "KillMode", "DevicePolicy", "Slice", "SyslogIdentifier"):
            lines.append((name, value.decode()))
        elif name in ("Delegate", "PrivateNetwork"):
            lines.append((name, "yes" if value is True else "no" if value is False else f"not a boolean: {value!r}"))
        elif name == "DeviceAllow":
            lines += [(name, f"{device.decode()} {access.decode()}") for device, access in value]
        elif name == "TimeoutStopUSec":
            seconds, rest = divmod(value, 1_000_000)
            lines.append(("TimeoutStopSec", str(seconds) if not rest else f"{value}us"))
        elif name == "SuccessExitStatus":
            statuses, signals = value
            lines.append((name, " ".join([*map(str, statuses), *(signal.Signals(n).name for n in signals)])))
        elif name == "KillSignal":
            lines.append((name, signal.Signals(value).name))
        elif name == "MemoryMax":
            lines.append((name, _amount(value, format_size)))
        elif name == "TasksMax":
            lines.append((name, _amount(value)))
        elif name.startswith("Limit"):
            lines.append((name, f"{_amount(properties[f'{name}Soft'.encode()])}:{_amount(value)}"))
        elif name in ("ExecStart", "ExecReload", "ExecStopPost"):
            for path, argv, ignore_failure in value:
                words = [w.decode() for w in argv]
                prefix = "" if path == argv[0] and ignore_failure is False else f"{path!r} {ignore_failure} "
                lines.append((name, prefix + _exec_words(words)))
        elif name == "RuntimeDirectory":
            lines.append((name, " ".join(v.decode() for v in value)))
        else:
            lines.append((name, f"no inverse for the D-Bus property {name}: {value!r}"))
    return lines


def canonical(name: str, value: str) -> str:
    """A unit-file value in the form `as_settings` gives: Exec*= as its words, a Limit*=
    as SOFT:HARD."""
    if name in ("ExecStart", "ExecReload", "ExecStopPost"):
        return _exec_words(split_words(value))
    if name.startswith("Limit") and ":" not in value:
        return f"{value}:{value}"
    return value


def disagreements(text: list[Setting], properties: dict[bytes, Any]) -> list[str]:
    """How the unit-text settings and the D-Bus properties differ, setting by setting (the
    values of a repeated setting in order)."""
    want: dict[str, list[str]] = {}
    for name, value in text:
        want.setdefault(name, []).append(canonical(name, value))
    got: dict[str, list[str]] = {}
    for name, value in as_settings(properties):
        got.setdefault(name, []).append(value)
    problems = []
    for name in sorted(want.keys() | got.keys()):
        if name not in got:
            problems.append(f"{name}={want[name]} has no D-Bus counterpart")
        elif name not in want:
            problems.append(f"D-Bus has {name}={got[name]}, the unit text does not")
        elif want[name] != got[name]:
            problems.append(f"{name}: unit text {want[name]} != D-Bus {got[name]}")
    return problems


# --- the golden files, both ways ---


def generated(name: str) -> tuple[Generated, list[Setting], list[Setting]]:
    """The generated unit of golden file `name`, its policy's [Service] lines as the unit text
    has them (parsed back, without the file's own lines), and its [Unit] lines."""
    sources, index = find_sources([str(GOLDEN)])
    known = {s.name for s in sources}
    [source] = [s for s in sources if s.name == name]
    result = generate(source, known, index)
    unit = parse_text(result.text, result.service)
    service = [(e.key, e.value) for e in unit.section("Service")]
    for entry in load(source, index).section("Service"):
        service.remove((entry.key, entry.value))  # the file's own line, written as it is
    return result, service, [(e.key, e.value) for e in unit.section("Unit")]


def policy_of(result: Generated) -> ServicePolicy:
    assert result.policy is not None
    return result.policy


@pytest.mark.parametrize("name", NAMES)
def test_both_renderings_of_the_golden_files_agree(name: str) -> None:
    result, service, unit = generated(name)
    policy = policy_of(result)
    # the generator writes the policy as it is: [Service] is nothing else (with the file's own lines)
    assert service == [*policy.service, *policy.service_last]
    assert all(setting in unit for setting in (*policy.unit_file_only, *policy.unit))
    properties = dbus_properties(policy.both())
    assert disagreements([*policy.unit, *service], properties) == []
    # what the file alone gets is not sent
    sent = as_settings(properties)
    assert not [s for s in policy.unit_file_only if (s[0], canonical(*s)) in sent]


def test_the_golden_files_cover_the_policy() -> None:
    """Between them the golden files make every setting the policy has (so the test above
    compares each), and a file-only [Unit] setting."""
    made = {name for n in NAMES for name, _ in policy_of(generated(n)[0]).both()}
    assert made >= {"ExecStart", "ExecReload", "KillSignal", "MemoryMax", "TasksMax", "PrivateNetwork"}
    assert {"LimitNOFILE", "LimitCORE", "LimitNPROC", "RuntimeDirectory", "DeviceAllow"} <= made
    assert any(policy_of(generated(n)[0]).unit_file_only for n in NAMES)


def _drop(key: bytes) -> Callable[[dict[bytes, Any]], None]:
    return lambda p: p.pop(key) and None


def _set(key: bytes, value: Any) -> Callable[[dict[bytes, Any]], None]:
    return lambda p: p.__setitem__(key, value)


DRIFTS: dict[str, tuple[Callable[[dict[bytes, Any]], None], str]] = {
    "a property left out": (_drop(b"KillMode"), "KillMode=['mixed'] has no D-Bus counterpart"),
    "a timeout in the wrong unit": (_set(b"TimeoutStopUSec", 30), "TimeoutStopSec: unit text ['30'] != D-Bus"),
    "a device left out": (lambda p: p[b"DeviceAllow"].pop(), "DeviceAllow: unit text"),
    "a soft limit lost": (_set(b"LimitNOFILESoft", 2048), "LimitNOFILE: unit text ['1024:2048']"),
    "an argument's $ doubled": (
        lambda p: p[b"ExecStart"][0][1].__setitem__(-1, p[b"ExecStart"][0][1][-1].replace(b"$", b"$$")),
        "ExecStart: unit text",
    ),
    "a property the file has not": (_set(b"RestartUSec", 1), "RestartUSec"),
}


@pytest.mark.parametrize("drift", DRIFTS)
def test_a_drift_fails_the_cross_check(drift: str) -> None:
    """What the golden test above would say if the D-Bus side drifted from the unit text."""
    _, service, _ = generated("everything.container")
    properties = dbus_properties(service)
    assert disagreements(service, properties) == []
    change, message = DRIFTS[drift]
    change(properties)
    problems = disagreements(service, properties)
    assert problems and any(message in problem for problem in problems), problems


def test_a_setting_without_a_property_fails_loudly() -> None:
    """A setting added to the policy (or to the generator's [Service]) without a D-Bus
    conversion: `run` refuses it instead of leaving it out, and the cross-check sees it."""
    _, service, _ = generated("hello.container")
    with pytest.raises(LookupError, match="Restart= has no D-Bus property"):
        dbus_properties([*service, ("Restart", "on-failure")])
    assert disagreements([*service, ("Restart", "on-failure")], dbus_properties(service)) == [
        "Restart=['on-failure'] has no D-Bus counterpart"
    ]


# --- `sdcontainer run` sends the policy ---


def test_run_sends_the_policy_and_only_the_declared_extras() -> None:
    spec = spec_from_argv(["--rootfs", "/srv/rootfs", "--network", "host", "--", "/bin/sh", "-c", "echo $HOME"])
    spec = replace(spec, unit="web.service", name="web", stop_signal="SIGINT", memory="64M")
    policy = service_policy(spec, launcher_command(), unit="web.service")
    assert policy.unit_file_only == (
        ("RequiresMountsFor", "/srv/rootfs"),
        ("Wants", "network-online.target"),
        ("After", "network-online.target"),
    )
    for stdio in (None, (0, 1, 2)):
        properties = transient_properties(spec, "web.service", stdio=stdio, description=None)
        extras = {key: value for key, value in properties.items() if key in TRANSIENT_ONLY}
        assert {key: value for key, value in properties.items() if key not in extras} == dbus_properties(policy.both())
        assert set(extras) == ({b"Description"} if stdio is None else set(TRANSIENT_ONLY))
        assert all(key in SIGNATURES for key in properties)
        assert disagreements([*policy.unit, *policy.service, *policy.service_last], properties) == []
    assert properties[b"SyslogIdentifier"] == b"web"
    assert properties[b"RuntimeDirectory"] == [b"sdcontainer/containers/web.service"]


@pytest.mark.parametrize(
    "word",
    ["plain", "", "two words", "$HOME", "$$", "100%", 'a"b', "back\\slash", "tab\there", "nl\n", "\x01\x7f", "é'"],
)
def test_exec_words_reach_dbus_as_the_file_gives_them_to_systemd(word: str) -> None:
    """ExecStart= over D-Bus is the unit file's line split back: each word as it is but `$`
    doubled (systemd expands $VAR in arguments at exec time, for a transient unit too)."""
    argv = ["/usr/libexec/sdcontainer/launcher", "start", "--", "/bin/echo", word]
    [(path, words, ignore)] = dbus_properties([("ExecStart", exec_line(argv))])[b"ExecStart"]
    assert words == [w.replace("$", "$$").encode() for w in argv]
    assert path == words[0] and ignore is False


def test_signatures_agree_with_pystemd_where_it_knows_them() -> None:
    """A second opinion on the D-Bus types: pystemd's table of unit property signatures."""
    from sdcontainer.transient import _namespace_package

    _namespace_package("pystemd")
    _namespace_package("pystemd.systemd1")
    from pystemd.systemd1.unit_signatures import KNOWN_UNIT_SIGNATURES

    known = {name: KNOWN_UNIT_SIGNATURES[name] for name in SIGNATURES if name in KNOWN_UNIT_SIGNATURES}
    assert known == {name: SIGNATURES[name] for name in known}
    # missing from pystemd 0.13's table; LoadCredential a(ss) and SetCredential a(say) as in org.freedesktop.systemd1(5)
    assert set(SIGNATURES) - set(known) <= {b"DeviceAllow", b"AddRef", b"LoadCredential", b"SetCredential"}
