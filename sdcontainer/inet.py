"""IP addresses and subnets as (family, integer) pairs, for the start path.

The standard library's `ipaddress` costs about 4 ms to import (functools, re); the launcher
imports nothing of the kind, so the IPAM and the netlink code parse and print addresses with
`_socket.inet_pton`/`inet_ntop` (the C module; `socket` itself pulls in enum and selectors,
about 6 ms) and do their arithmetic on plain integers. Text is always the canonical form
inet_ntop gives ("fd00::a", not "fd00:0::000a"), so it can name files and compare as strings.
"""

from __future__ import annotations

import _socket

from sdcontainer.record import record

AF_INET = _socket.AF_INET
AF_INET6 = _socket.AF_INET6
BITS = {AF_INET: 32, AF_INET6: 128}


def parse_address(text: str) -> tuple[int, int]:
    """'10.90.0.10' -> (AF_INET, 0x0a5a000a); ValueError on anything else (no names, no
    shorthand such as '10.1', no zone index)."""
    family = AF_INET6 if ":" in text else AF_INET
    try:
        packed = _socket.inet_pton(family, text)
    except OSError:
        raise ValueError(f"not an IP address: {text!r}") from None
    return family, int.from_bytes(packed, "big")


def pack(family: int, value: int) -> bytes:
    return value.to_bytes(BITS[family] // 8, "big")


def format_address(family: int, value: int) -> str:
    return _socket.inet_ntop(family, pack(family, value))


def canonical(text: str) -> str:
    """The one spelling of an address, e.g. for a file name."""
    return format_address(*parse_address(text))


def parse_interface(text: str) -> tuple[int, int, int]:
    """'10.90.0.10/24' -> (family, address, prefixlen); the address may have host bits.
    Without '/', the whole address (a /32 or /128)."""
    address, slash, length = text.partition("/")
    family, value = parse_address(address)
    bits = BITS[family]
    if not slash:
        return family, value, bits
    if not length.isdigit() or not 0 <= int(length) <= bits:
        raise ValueError(f"bad prefix length in {text!r}")
    return family, value, int(length)


@record
class Subnet:
    """A network: its family, first address and prefix length."""

    family: int
    network: int
    prefixlen: int

    @classmethod
    def parse(cls, text: str) -> Subnet:
        """'10.90.0.0/24'; host bits set ('10.90.0.1/24') is an error, as podman's is."""
        family, value, prefixlen = parse_interface(text)
        if "/" not in text:
            raise ValueError(f"a subnet needs a prefix length: {text!r}")
        subnet = cls(family, value & _mask(family, prefixlen), prefixlen)
        if subnet.network != value:
            raise ValueError(f"{text} has host bits set (the subnet is {subnet})")
        return subnet

    @property
    def bits(self) -> int:
        return BITS[self.family]

    @property
    def last(self) -> int:
        """The highest address (the IPv4 broadcast address)."""
        return self.network | ((1 << (self.bits - self.prefixlen)) - 1)

    def __contains__(self, value: int) -> bool:
        return self.network <= value <= self.last

    def contains_subnet(self, other: Subnet) -> bool:
        return other.family == self.family and other.prefixlen >= self.prefixlen and other.network in self

    def hosts(self) -> tuple[int, int]:
        """First and last assignable address: without the network address and, for IPv4, the
        broadcast address (a /31 and /32 have neither, RFC 3021; IPv6 keeps the last)."""
        if self.family == AF_INET and self.prefixlen >= 31:
            return self.network, self.last
        if self.family == AF_INET:
            return self.network + 1, self.last - 1
        return self.network + 1, self.last

    def address(self, value: int) -> str:
        return format_address(self.family, value)

    def interface(self, value: int) -> str:
        """'10.90.0.10/24': an address with this subnet's prefix length."""
        return f"{self.address(value)}/{self.prefixlen}"

    def __str__(self) -> str:
        return f"{self.address(self.network)}/{self.prefixlen}"


def _mask(family: int, prefixlen: int) -> int:
    bits = BITS[family]
    return ((1 << bits) - 1) ^ ((1 << (bits - prefixlen)) - 1)
