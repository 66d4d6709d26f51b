"""What goes into a unit from a name or a path, as pure functions: systemd's unit-name rules,
the paths that cannot be written, %-specifier and word quoting, how names are shown in
messages, and the parser reading lines where systemd reads them."""

from __future__ import annotations

import pytest

from sdcontainer.errors import ConfigError
from sdcontainer.text import printable, shown
from sdcontainer.unitfile import (
    escape_specifiers,
    parse_text,
    quote_exec_word,
    quote_list_word,
    split_words,
    unit_name_problem,
    unit_path_problem,
)


@pytest.mark.parametrize(
    "name",
    [
        "web.service",
        "web@.service",
        "web@blue.service",
        "a@b@c.service",  # the instance may hold an @
        "dev-sda1\\x2dold.mount",  # systemd-escape's \x2d
        "c:d_e.f-g.socket",
        ".hidden.service",  # systemd takes it; the generator refuses it for the launcher
        "x" * 247 + ".service",  # 255
    ],
)
def test_valid_unit_names(name: str) -> None:
    assert unit_name_problem(name) is None


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("web", "unit type"),
        ("web.container", "unit type"),
        (".service", "unit type"),
        ("bad name.service", "only ASCII"),
        ("a\nb.service", "only ASCII"),
        ("per%cent.service", "only ASCII"),
        ("semi;colon.service", "only ASCII"),
        ("caf\u00e9.service", "only ASCII"),
        ("sl/ash.service", "only ASCII"),
        ("@.service", "nothing before"),
        ("@x.service", "nothing before"),
        ("x" * 248 + ".service", "longer than 255"),
    ],
)
def test_invalid_unit_names(name: str, why: str) -> None:
    problem = unit_name_problem(name)
    assert problem is not None and why in problem, problem


def test_paths_that_can_be_written() -> None:
    for path in ["/etc/sdcontainer/web.container", "/etc/100% sure/\"q\" 'x'/a\\b.container", "/opt/caf\u00e9/x"]:
        assert unit_path_problem(path) is None, path


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("/etc/a\n[Service]\nExecStartPre=/bin/x\n/y.container", "control character"),
        ("/etc/a\rb/y.container", "control character"),
        ("/etc/a\tb/y.container", "control character"),
        ("/etc/a\x7fb/y.container", "control character"),
        ("/etc/a\x85b/y.container", "control character"),
        ("/etc/\udcff/y.container", "not valid UTF-8"),  # os.fsdecode(b"\xff")
    ],
)
def test_paths_that_cannot_be_written(path: str, why: str) -> None:
    problem = unit_path_problem(path)
    assert problem is not None and why in problem, problem


def test_escape_specifiers() -> None:
    assert escape_specifiers("/etc/100%n/x") == "/etc/100%%n/x"
    assert escape_specifiers("%%") == "%%%%"
    assert escape_specifiers("/plain") == "/plain"


def test_quote_list_word_round_trips_through_systemds_unquoting() -> None:
    """RequiresMountsFor= words: EXTRACT_UNQUOTE without C escapes, where a backslash takes
    the next character literally (checked against systemd 252: systemctl show gives back
    "/a b/c\\"d" and /g\\h for these)."""
    assert quote_list_word("/srv/rootfs") == "/srv/rootfs"
    assert quote_list_word("/srv/100%%n") == "/srv/100%%n"
    assert quote_list_word("/a b/c") == '"/a b/c"'
    assert quote_list_word('/a"b') == '"/a\\"b"'
    assert quote_list_word("/g\\h") == '"/g\\\\h"'
    assert quote_list_word("") == '""'


@pytest.mark.parametrize(
    "word",
    ["plain", "x;y", ";", "it's", 'say "hi"', "$HOME", "a\nb", "tab\there", "back\\slash", "", "\x01\x7f"],
)
def test_exec_words_round_trip(word: str) -> None:
    """quote_exec_word's output, split as systemd splits ExecStart= (our split_words does
    the same unquoting and C unescaping), gives the word back; $ is doubled for systemd."""
    quoted = quote_exec_word(word)
    assert "\n" not in quoted
    assert split_words(quoted.replace("$$", "$")) == [word]
    if word == ";":
        assert quoted == '";"'  # a lone unquoted ; would separate commands


def test_shown_leaves_printable_names_alone() -> None:
    assert shown("/etc/sdcontainer/web\\x2dfront.container") == "/etc/sdcontainer/web\\x2dfront.container"
    assert shown("/etc/caf\u00e9 bar") == "/etc/caf\u00e9 bar"


def test_shown_quotes_and_escapes_the_rest() -> None:
    assert shown("/a\nb") == '"/a\\nb"'
    assert shown('/x"\t\\\n') == '"/x\\"\\t\\\\\\n"'
    assert shown("/\udcff\udc80") == '"/\\xff\\x80"'
    assert shown("/\x1b[31m") == '"/\\x1b[31m"'
    assert shown("/\u2028") == '"/\\u2028"'
    for text in ["/a\nb", "/\udcff", "\x00", "\u2029"]:
        assert shown(text).isprintable()


def test_printable_makes_one_line() -> None:
    assert printable("plain message: a\\b") == "plain message: a\\b"
    assert printable("x\nPRIORITY=0") == "x\\nPRIORITY=0"
    assert printable("bad \udcfe byte").isprintable()


# --- the parser reads lines as systemd does ----------------------------------------------------


def values(text: str) -> list[tuple[str, str]]:
    return [(e.key, e.value) for e in parse_text(text, "/x.container").entries]


def test_continuation_needs_an_odd_number_of_backslashes() -> None:
    assert values("[S]\nA=x\\\nB=y\n") == [("A", "x B=y")]
    assert values("[S]\nA=x\\\\\nB=y\n") == [("A", "x\\\\"), ("B", "y")]
    assert values("[S]\nA=x\\\\\\\nB=y\n") == [("A", "x\\\\ B=y")]
    assert values("[S]\nA=x\\\\\\\\\nB=y\n") == [("A", "x\\\\\\\\"), ("B", "y")]


def test_a_continuation_at_the_end_of_the_file() -> None:
    assert values("[S]\nA=x\\\\\\") == [("A", "x\\\\")]


def test_lines_end_at_newline_and_carriage_return_only() -> None:
    assert values("[S]\nA=1\x0cB=2\n") == [("A", "1\x0cB=2")]
    assert values("[S]\nA=1\x0bB=2\x1cC\x85D\u2028E\u2029F\n") == [("A", "1\x0bB=2\x1cC\x85D\u2028E\u2029F")]
    assert values("[S]\r\nA=1\rB=2\r\n") == [("A", "1"), ("B", "2")]
    # systemd strips only space, tab and line ends: a form feed stays part of the value
    assert values("[S]\nA= 1\x0c\n") == [("A", "1\x0c")]


def test_a_nul_character_is_refused() -> None:
    """systemd ends a line at a NUL: what follows would be a line of its own."""
    with pytest.raises(ConfigError) as caught:
        parse_text("[S]\nA=1\n\nB=2\x00C=3\n", "/x.container")
    assert str(caught.value) == "/x.container:4: a NUL character in the line; systemd would end the line there"
