"""The unit-file reader: systemd's syntax, one rule per test."""

from __future__ import annotations

import pytest

from sdcontainer.errors import ConfigError
from sdcontainer.unitfile import parse_text, quote_exec_word, split_words, unquote


def test_sections_keys_and_comments() -> None:
    unit = parse_text("# comment\n; also\n[Unit]\nDescription = Hello world \n\n[Container]\nExec=/bin/true\n", "f")
    assert [(e.section, e.key, e.value, e.line) for e in unit.entries] == [
        ("Unit", "Description", "Hello world", 4),
        ("Container", "Exec", "/bin/true", 7),
    ]
    assert unit.sections == ["Unit", "Container"]


def test_continuation_lines_join_with_a_space_and_skip_comments() -> None:
    unit = parse_text("[Container]\nExec=/bin/echo \\\n# skipped\n  one \\\n  two\nUser=app\n", "f")
    assert unit.lookup_last("Container", "Exec").value.split() == ["/bin/echo", "one", "two"]
    assert unit.lookup_last("Container", "Exec").line == 2
    assert unit.lookup_last("Container", "User").line == 6


def test_continuation_at_end_of_file() -> None:
    unit = parse_text("[Container]\nExec=/bin/true \\", "f")
    assert unit.lookup_last("Container", "Exec").value == "/bin/true"


def test_empty_assignment_resets_a_list() -> None:
    unit = parse_text("[Container]\nVolume=/a:/a\nVolume=\nVolume=/b:/b\nVolume=/c:/c\n", "f")
    assert [e.value for e in unit.lookup_all("Container", "Volume")] == ["/b:/b", "/c:/c"]


def test_last_assignment_wins_for_single_values() -> None:
    unit = parse_text("[Container]\nUser=a\nUser=b\n", "f")
    assert unit.lookup_last("Container", "User").value == "b"


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("[Container]\nthis is not an assignment\n", 2, "not a [Section] header"),
        ("Exec=/bin/true\n", 1, "outside of any [Section]"),
        ("[Container\nExec=x\n", 1, "invalid section header"),
        ("[Container]\nBad Key=1\n", 2, "invalid key name"),
    ],
)
def test_syntax_errors_name_file_and_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_text(text, "/etc/sdcontainer/x.container")
    assert caught.value.line == line
    assert str(caught.value).startswith(f"/etc/sdcontainer/x.container:{line}: ")
    assert fragment in str(caught.value)


def test_split_words_quotes_and_c_escapes() -> None:
    # the same expectations as Quadlet's escapes.container
    words = split_words(r"""/some/path "an arg" "a;b\nc\td'e" a;b\nc\td 'a"b' '\110ello \127orld'""")
    assert words == ["/some/path", "an arg", "a;b\nc\td'e", "a;b\nc\td", 'a"b', "Hello World"]


def test_split_words_unterminated_quote() -> None:
    with pytest.raises(ConfigError, match="unterminated quote"):
        split_words('"abc')


def test_unknown_escape_is_kept_verbatim_like_systemd() -> None:
    assert split_words(r"'test\.com' a\qb") == [r"test\.com", r"a\qb"]


def test_unquote_strips_one_pair() -> None:
    assert unquote('"a b"') == "a b"
    assert unquote('""x""') == '"x"'
    assert unquote("plain") == "plain"


@pytest.mark.parametrize("word", ["plain", "a b", 'q"uote', "back\\slash", "$HOME", "tab\tnl\n", "", "é", "a;b"])
def test_quote_exec_word_round_trips_through_systemd_splitting(word: str) -> None:
    quoted = quote_exec_word(word)
    # systemd turns $$ back into $ after splitting; nothing else may change
    assert [w.replace("$$", "$") for w in split_words(quoted)] == [word]


def test_quote_exec_word_leaves_specifiers_for_systemd() -> None:
    assert quote_exec_word("%n") == "%n"
    assert quote_exec_word("/srv/%i/data") == "/srv/%i/data"
