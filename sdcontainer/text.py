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


def is_service_unit_name(name: str) -> bool:
    """A service name as systemd spells them (it also names the launcher's state record)."""
    stem = name[: -len(".service")] if name.endswith(".service") else ""
    return word(stem, ALNUM + ":_\\-@", ALNUM + ":_.\\-@", 247)


_SHOWN_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _shown_char(c: str) -> str:
    if c in _SHOWN_ESCAPES:
        return _SHOWN_ESCAPES[c]
    if c.isprintable():
        return c
    code = ord(c)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8, as os.fsdecode keeps it
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def shown(text: str) -> str:
    """`text` (a file name, a value) as a message or a comment may show it: unchanged when
    every character is printable, else in double quotes with C escapes (\\n, \\t, \\xff for
    a byte that is not UTF-8), so that no name can end a line, a journal field or a unit
    file's comment, nor hide what it is on a terminal."""
    if text.isprintable():
        return text
    return '"' + "".join(_shown_char(c) for c in text) + '"'


def nearest(word: str, candidates: list[str]) -> str | None:
    """The candidate `word` is most likely a misspelling of (case ignored), for a "did you
    mean" in an error message, or None. Only error paths call it: difflib imports re."""
    import difflib

    by_lower = {candidate.lower(): candidate for candidate in candidates}
    found = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.75)
    return by_lower[found[0]] if found else None


def printable(message: str) -> str:
    """A message with its non-printable characters escaped (backslashes left alone): one
    line, whatever went into it."""
    if message.isprintable():
        return message
    return "".join(c if c.isprintable() else _shown_char(c) for c in message)


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


def _glob_class(pattern: str, i: int) -> tuple[list[tuple[str, str]], bool, int]:
    """The [...] class starting after the '[' at pattern[i-1]: (ranges, negated, index past ']')."""
    negated = pattern[i : i + 1] == "^"
    i += negated
    ranges: list[tuple[str, str]] = []

    def char(i: int) -> tuple[str, int]:
        if i >= len(pattern) or pattern[i] in "-]":
            raise ValueError("malformed [...] in the pattern")
        if pattern[i] == "\\":
            i += 1
            if i >= len(pattern):
                raise ValueError("the pattern ends in \\")
        return pattern[i], i + 1

    while True:
        if pattern[i : i + 1] == "]" and ranges:
            return ranges, negated, i + 1
        low, i = char(i)
        high = low
        if pattern[i : i + 1] == "-":
            high, i = char(i + 1)
        ranges.append((low, high))


def check_glob(pattern: str) -> None:
    """Raises ValueError where Go's filepath.Match would say ErrBadPattern."""
    i = 0
    while i < len(pattern):
        if pattern[i] == "[":
            i = _glob_class(pattern, i + 1)[2]
        elif pattern[i] == "\\":
            if i + 1 >= len(pattern):
                raise ValueError("the pattern ends in \\")
            i += 2
        else:
            i += 1


def glob_match(pattern: str, name: str) -> bool:
    """Go's path/filepath.Match, without fnmatch (which imports re): * matches any run of
    characters but '/', ? one character but '/', [a-z] and [^a-z] classes, \\ escapes."""

    def match(i: int, j: int) -> bool:
        while i < len(pattern):
            c = pattern[i]
            if c == "*":
                while i < len(pattern) and pattern[i] == "*":
                    i += 1
                for k in range(j, len(name) + 1):
                    if match(i, k):
                        return True
                    if k < len(name) and name[k] == "/":
                        return False
                return False
            if j >= len(name) or name[j] == "/" and c in "?[":
                return False
            if c == "[":
                ranges, negated, i = _glob_class(pattern, i + 1)
                if any(low <= name[j] <= high for low, high in ranges) == negated:
                    return False
            elif c == "?":
                i += 1
            else:
                if c == "\\":
                    i += 1
                if pattern[i] != name[j]:
                    return False
                i += 1
            j += 1
        return j == len(name)

    return match(0, 0)
