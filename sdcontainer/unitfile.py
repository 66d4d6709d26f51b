"""A reader for systemd's unit-file syntax, written once and used by everything.

systemd.syntax(7): `[Section]` headers, `Key=Value` lines, `#`/`;` comments at the start of
a line, a trailing backslash continuing a line (comment lines inside a continuation are
skipped), repeated keys, and an empty assignment resetting a list. configparser can do
none of the last three, hence this module. Every value remembers its file and line, so any
later error can point at it. Specifiers (`%n`, `%i`, ...) are left alone: systemd expands them.
"""

from __future__ import annotations

import os
import stat  # loaded by os already

from sdcontainer.errors import ConfigError
from sdcontainer.record import record
from sdcontainer.text import ALNUM, HEX, OCTAL, only, word

_KEY_CHARS = ALNUM + "_.-"
_NOT_IN_SECTION = {c: None for c in [*range(0x20), ord("["), ord("]")]}


@record
class Entry:
    section: str
    key: str
    value: str
    path: str
    line: int

    def error(self, message: str) -> ConfigError:
        return ConfigError(message, self.path, self.line)


class UnitFile:
    """Entries in file order; drop-ins are appended in the order they apply."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.entries: list[Entry] = []
        self.sections: list[str] = []
        self.headers: list[Entry] = []  # one per [Section] line, for errors about sections
        self._sections_cache: dict[str, list[Entry]] | None = None
        self._cached_count = 0

    def merge(self, other: UnitFile) -> None:
        self.entries.extend(other.entries)
        self.headers.extend(other.headers)
        for section in other.sections:
            if section not in self.sections:
                self.sections.append(section)

    def section(self, name: str) -> list[Entry]:
        return self._by_section().get(name, [])

    def _by_section(self) -> dict[str, list[Entry]]:
        # built once and reused: the generator asks for each section several times per file
        if self._sections_cache is None or self._cached_count != len(self.entries):
            grouped: dict[str, list[Entry]] = {}
            for entry in self.entries:
                grouped.setdefault(entry.section, []).append(entry)
            self._sections_cache, self._cached_count = grouped, len(self.entries)
        return self._sections_cache

    def has_section(self, name: str) -> bool:
        return name in self.sections

    def lookup_last(self, section: str, key: str) -> Entry | None:
        found = None
        for entry in self.section(section):
            if entry.key == key:
                found = entry
        return found

    def lookup_all(self, section: str, key: str) -> list[Entry]:
        """Every assignment of a list key, with `Key=` (empty) discarding those before it."""
        found: list[Entry] = []
        for entry in self.section(section):
            if entry.key == key:
                if entry.value == "":
                    found = []
                else:
                    found.append(entry)
        return found


# str.splitlines() ends lines at these as well; systemd (read_line()) ends them at \\n, \\r
# and \\r\\n only, and keeps these inside the value
_OTHER_LINE_BREAKS = "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


def _lines(text: str) -> list[str]:
    """The lines of a unit file where systemd sees them."""
    if any(c in text for c in _OTHER_LINE_BREAKS):
        return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return text.splitlines()  # the common case, in C


def _line_of(text: str, index: int) -> int:
    return len(_lines(text[:index] + "."))


# what systemd strips around lines, keys and values (WHITESPACE); str.strip() would also
# take a form feed or a \x1c, which systemd keeps
_BLANK = " \t\n\r"


# the "section" of the lines after an invalid header: they are skipped, as errors about them
# (an unknown section, a key outside of any) would only repeat the header's
_BROKEN_SECTION = "\0"


def parse_text(text: str, path: str, errors: list[ConfigError] | None = None) -> UnitFile:
    """The file's entries. The first bad line raises ConfigError; with `errors`, every bad
    line is appended to it instead and left out (those after a bad section header too)."""
    unit = UnitFile(path)
    section: str | None = None
    pending: list[str] = []
    pending_line = 0

    def bad(message: str, lineno: int) -> None:
        if errors is None:
            raise ConfigError(message, path, lineno)
        errors.append(ConfigError(message, path, lineno))

    def finish(logical: str, lineno: int) -> None:
        nonlocal section
        stripped = logical.strip(_BLANK)
        if not stripped:
            return
        if stripped.startswith("["):
            section = stripped[1:-1]
            if not stripped.endswith("]") or not section or section.translate(_NOT_IN_SECTION) != section:
                section = _BROKEN_SECTION
                return bad(f"invalid section header {stripped!r}", lineno)
            unit.headers.append(Entry(section, "", "", path, lineno))
            if section not in unit.sections:
                unit.sections.append(section)
            return
        key, sep, value = stripped.partition("=")
        key = key.strip(_BLANK)
        if not sep:
            return bad(f"line is not a [Section] header, a Key=Value assignment or a comment: {stripped!r}", lineno)
        if not word(key, ALNUM, _KEY_CHARS):
            return bad(f"invalid key name {key!r}", lineno)
        if section is None:
            return bad(f"assignment {key}= outside of any [Section]", lineno)
        if section != _BROKEN_SECTION:
            unit.entries.append(Entry(section, key, value.strip(_BLANK), path, lineno))

    nul = text.find("\0")
    if nul >= 0:  # systemd ends the line there: the rest would be a line of its own
        # with `errors` too: systemd would read the rest as lines of their own
        raise ConfigError("a NUL character in the line; systemd would end the line there", path, _line_of(text, nul))
    for lineno, raw in enumerate(_lines(text), start=1):
        line = raw.strip(_BLANK)
        if line.startswith(("#", ";")):
            continue  # a comment, also in the middle of a continuation (as systemd does)
        # an odd number of trailing backslashes continues the line, as in systemd: the last
        # one escapes the end of the line, the others each other (\\ ends it)
        continued = line.endswith("\\") and (len(line) - len(line.rstrip("\\"))) % 2 == 1
        if not pending and not continued:
            finish(line, lineno)  # the common case: one physical line
            continue
        if not pending:
            pending_line = lineno
        if continued:
            pending.append(line[:-1] + " ")
            continue
        pending.append(line)
        finish("".join(pending), pending_line)
        pending = []
    if pending:
        finish("".join(pending), pending_line)
    return unit


# No unit file comes near this; a file that does is read no further (systemd reads lines
# of at most 1 MiB).
MAX_FILE_SIZE = 8 << 20


def parse_file(path: str, errors: list[ConfigError] | None = None) -> UnitFile:
    """Read and parse one file. Opened without blocking and read up to MAX_FILE_SIZE, so a
    FIFO, a link to /dev/zero or a huge file is an error about that file, never a hang or a
    MemoryError that would cost every other unit of a generator run. A file that cannot be
    read raises ConfigError; bad lines go to `errors`, if given (see parse_text)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:  # plain fds, no file object: this runs for every file at every boot and reload
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise ConfigError("not a regular file", path)
            # checked before reading: reading up to MAX_FILE_SIZE would allocate it per file
            if info.st_size > MAX_FILE_SIZE:
                raise ConfigError(f"larger than {MAX_FILE_SIZE >> 20} MiB; not a unit file", path)
            data = os.read(fd, info.st_size + 1)
        finally:
            os.close(fd)
    except OSError as error:
        raise ConfigError(f"cannot read: {error.strerror}", path) from None
    if len(data) > MAX_FILE_SIZE:  # it grew while we read it
        raise ConfigError(f"larger than {MAX_FILE_SIZE >> 20} MiB; not a unit file", path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError("file is not valid UTF-8", path) from None
    return parse_text(text, path, errors)


# --- value helpers -----------------------------------------------------------------------

_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    '"': '"',
    "'": "'",
    "s": " ",
}


def _digits(text: str, digits: str, count: int) -> bool:
    return len(text) == count and only(text, digits)


def _unescape_at(text: str, i: int) -> tuple[str, int]:
    """C-unescape the escape starting at text[i] (a backslash); returns (char, next index)."""
    if i + 1 >= len(text):
        return "\\", i + 1
    c = text[i + 1]
    if c in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[c], i + 2
    if c == "x" and _digits(text[i + 2 : i + 4], HEX, 2):
        return chr(int(text[i + 2 : i + 4], 16)), i + 4
    if c in "uU":
        width = 4 if c == "u" else 8
        digits = text[i + 2 : i + 2 + width]
        if _digits(digits, HEX, width):
            return chr(int(digits, 16)), i + 2 + width
    if _digits(text[i + 1 : i + 4], OCTAL, 3):
        return chr(int(text[i + 1 : i + 4], 8)), i + 4
    # Unknown escapes are kept verbatim, as systemd and Quadlet do (they only warn).
    return "\\" + c, i + 2


def split_words(value: str, entry: Entry | None = None) -> list[str]:
    """Split the way systemd splits ExecStart= and Environment=: whitespace separates words,
    single or double quotes group them, and C escapes are decoded."""
    if not any(c in value for c in "\"'\\"):
        return value.split()
    words: list[str] = []
    current: list[str] = []
    in_word = False
    quote: str | None = None
    i = 0
    while i < len(value):
        c = value[i]
        if quote:
            if c == quote:
                quote = None
                i += 1
            elif c == "\\":
                ch, i = _unescape_at(value, i)
                current.append(ch)
            else:
                current.append(c)
                i += 1
            continue
        if c in " \t\n":
            if in_word:
                words.append("".join(current))
                current, in_word = [], False
            i += 1
        elif c in "\"'":
            quote, in_word = c, True
            i += 1
        elif c == "\\":
            ch, i = _unescape_at(value, i)
            current.append(ch)
            in_word = True
        else:
            current.append(c)
            in_word = True
            i += 1
    if quote:
        message = "unterminated quote"
        raise entry.error(f"{entry.key}= has an {message}") if entry else ConfigError(message)
    if in_word:
        words.append("".join(current))
    return words


def unquote(value: str) -> str:
    """Strip one pair of surrounding double quotes, as Quadlet's Lookup does for single values."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


_TRUE = {"1", "yes", "true", "on"}
_FALSE = {"0", "no", "false", "off"}


def parse_boolean(value: str) -> bool:
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"{value!r} is not a boolean (use yes/no, true/false, on/off or 1/0)")


_PLAIN_WORD = ALNUM + "_@%+=:,./-"
_EXEC_ESCAPES = {ord('"'): '\\"', ord("\\"): "\\\\", ord("$"): "$$", ord("\n"): "\\n", ord("\t"): "\\t"}
_EXEC_ESCAPES.update({c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F] if c not in _EXEC_ESCAPES})


class EnvWord(str):
    """An argument whose `$VAR` and `${VAR}` systemd expands from the unit's environment, as
    Quadlet's command line leaves them: quote_exec_word keeps its `$`."""

    __slots__ = ()


# the same, with `$` left as it is: for a unit file's values, where `${VAR}` (and `$VAR` as
# a word of its own) is systemd's to expand and `$$` is a literal `$`, as in Quadlet
_EXEC_ESCAPES_VARIABLES = {c: escape for c, escape in _EXEC_ESCAPES.items() if c != ord("$")}


def quote_exec_word(word: str, *, variables: bool = False) -> str:
    """Quote one argument for an Exec*= line so systemd hands it over unchanged, except for
    `%` specifiers, which are left for systemd to expand (as in Quadlet); with `variables`,
    except for `$` too: the word came from a unit file's value, in which systemd expands
    `${VAR}` and a word `$VAR` at start, as it does on the podman command line Quadlet writes."""
    if word and only(word, _PLAIN_WORD):
        return word
    variables = variables or isinstance(word, EnvWord)
    return '"' + word.translate(_EXEC_ESCAPES_VARIABLES if variables else _EXEC_ESCAPES) + '"'


_LIST_ESCAPES = {ord('"'): '\\"', ord("\\"): "\\\\"}


def quote_list_word(word: str) -> str:
    """Quote one word of a list setting that systemd splits into words and unquotes but does
    not C-unescape (RequiresMountsFor=): inside double quotes, a backslash takes the next
    character as it is. `%` is left for systemd to expand, as in Exec*= lines."""
    if word and only(word, _PLAIN_WORD):
        return word
    return '"' + word.translate(_LIST_ESCAPES) + '"'


def escape_specifiers(text: str) -> str:
    """`text` with every % doubled, for a literal part of a value that systemd expands
    specifiers in (a path taken from a file or directory name)."""
    return text.replace("%", "%%")


# --- names and paths written into units -------------------------------------------------------

UNIT_NAME_MAX = 255  # systemd's UNIT_NAME_MAX is 256, with the terminating NUL
UNIT_TYPES = ("service", "socket", "target", "device", "mount", "automount", "swap", "timer", "path", "slice", "scope")
_UNIT_NAME_CHARS = ALNUM + ":-_.\\@"


def unit_name_problem(name: str) -> str | None:
    """Why systemd would not take `name` as a unit name (its unit_name_is_valid(): ASCII
    letters, digits and :-_.\\ before the type suffix, an @ for templates and instances,
    at most 255 characters), or None if it would."""
    stem, dot, suffix = name.rpartition(".")
    if not dot or not stem or suffix not in UNIT_TYPES:
        return "it does not end in a unit type (.service, .socket, ...)"
    if not only(stem, _UNIT_NAME_CHARS):
        return 'it may contain only ASCII letters, digits and ":-_.\\@"'
    if stem.startswith("@"):
        return 'it has nothing before the "@"'
    if len(name) > UNIT_NAME_MAX:
        return f"it is longer than {UNIT_NAME_MAX} characters"
    return None


def unit_path_problem(path: str) -> str | None:
    """Why `path` cannot be written into a unit file as it is (SourcePath=, a comment), or
    None. A newline would end the line and let the rest of the name become settings; other
    control characters are refused with it. A name that is not UTF-8 (os.fsdecode keeps its
    bytes as surrogates) makes systemd ignore the line ("not UTF-8 clean") and cannot be
    written into a UTF-8 file at all."""
    if path.isprintable():
        return None  # the common case, in C
    for c in path:
        code = ord(c)
        if 0xDC80 <= code <= 0xDCFF:
            return "the path is not valid UTF-8; it cannot be written into a unit"
        if code < 0x20 or 0x7F <= code <= 0x9F:
            return "a newline or other control character in the path cannot be written into a unit"
    return None  # printable enough: a no-break space, a format character
