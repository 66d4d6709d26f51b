"""Statements in the man pages and the README that the code can contradict (issue 14): an
example error for a Quadlet key must name a key that is still refused, and the way to read
the generator's messages must be where the generator sends them."""

from __future__ import annotations

import re

from sdcontainer import generator
from sdcontainer.keys import KEYS_BY_NAME, QUADLET_ONLY_KEYS
from tests.helpers import CHECKOUT

DOCS = [*sorted((CHECKOUT / "man").glob("*.scd")), CHECKOUT / "README.md"]
NOT_YET = re.compile(r"key (\w+)= in \[Container\] is a Quadlet key that sdcontainer does not support yet")


def test_example_errors_for_unsupported_quadlet_keys_name_keys_that_are_still_refused() -> None:
    wrong = []
    for doc in DOCS:
        for n, line in enumerate(doc.read_text().splitlines(), 1):
            for key in NOT_YET.findall(line):
                if key not in QUADLET_ONLY_KEYS:
                    supported = " (supported now)" if key in KEYS_BY_NAME else ""
                    wrong.append(f"{doc.name}:{n}: {key}={supported}")
    assert not wrong, wrong


def test_the_generators_messages_are_read_where_the_generator_sends_them() -> None:
    # it sends them to the journal under its own identifier (the kernel log only before
    # journald runs, and journald takes them over from there): never `journalctl -k`
    assert generator.PROGRAM == "sdcontainer-generator"
    for doc in DOCS:
        text = doc.read_text()
        for n, line in enumerate(text.splitlines(), 1):
            assert "journalctl -k" not in line, f"{doc.name}:{n}: {line}"
    page = (CHECKOUT / "man" / "sdcontainer-generator.8.scd").read_text()
    debugging = page[page.index("# DEBUGGING") : page.index("# FILES")]
    assert f"journalctl -b -t {generator.PROGRAM}" in debugging


def test_the_container_pages_web_server_is_the_readmes_example() -> None:
    page = (CHECKOUT / "man" / "sdcontainer.container.5.scd").read_text()
    block = page[page.index("# The example from the README") :].split("```", 1)[0]

    def lines(text: str) -> list[str]:
        return [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]

    assert lines(block) == lines((CHECKOUT / "examples" / "hello.container").read_text())
