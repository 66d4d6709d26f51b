"""Small checks on strings and signal names, without `re`, `enum` or `signal`.

Importing `re` (which imports `enum`) costs about 7 ms here, `signal` about 4 ms; the
generator runs at every boot and daemon-reload and the launcher at every container start,
and the checks they need are simple character classes.
"""

from __future__ import annotations

import _signal

UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
LOWER = "abcdefghijklmnopqrstuvwxyz"
DIGITS = "0123456789"
ALNUM = UPPER + LOWER + DIGITS
HEX = DIGITS + "abcdefABCDEF"
OCTAL = "01234567"


def only(value: str, allowed: str) -> bool:
    """Every character of `value` is in `allowed` (true for ""): str.strip does it in C."""
    return not value.strip(allowed)


def word(value: str, first: str, rest: str, max_length: int | None = None) -> bool:
    """A non-empty `value` whose first character is in `first` and the others in `rest`."""
    if not value or value[0] not in first or not only(value[1:], rest):
        return False
    return max_length is None or len(value) <= max_length


# signal numbers by name, from the C module; aliases give way to the usual names
_ALIASES = {"SIGIOT", "SIGCLD", "SIGPOLL"}
SIGNALS = {
    name: getattr(_signal, name)
    for name in dir(_signal)
    if name.startswith("SIG") and not name.startswith("SIG_") and name not in _ALIASES
}
SIGNAL_NAMES = {number: name for name, number in SIGNALS.items()}


def ipv4_address(value: str) -> bool:
    """Four decimal numbers 0-255 joined by dots, without leading zeros (as Go's ParseIP)."""
    parts = value.split(".")
    return len(parts) == 4 and all(
        word(p, DIGITS, DIGITS, 3) and int(p) <= 255 and (p == "0" or p[0] != "0") for p in parts
    )


def ipv6_address(value: str) -> bool:
    """RFC 4291 text: eight groups of up to four hex digits, one :: for a run of zero groups,
    perhaps an IPv4 address as the last 32 bits; no zone (%eth0)."""
    if "." in value:
        head, _, last = value.rpartition(":")
        if not head or not ipv4_address(last):
            return False
        value = head + ":0:0"  # the IPv4 part stands for two groups
    if value.count("::") > 1:
        return False
    front, double, back = value.partition("::")
    groups = (front.split(":") if front else []) + (back.split(":") if back else [])
    if not all(word(g, HEX, HEX, 4) for g in groups):
        return False
    return len(groups) < 8 if double else len(groups) == 8


def ip_address(value: str) -> bool:
    return ipv4_address(value) or ipv6_address(value)
