"""Where the `http` task may connect: `HttpPolicy` and resolving a host to its allowed addresses.

The allow-list is checked against the addresses a name RESOLVES to (DNS runs on an OS thread through
`pool_core.threads`, never on the hub), and the connection goes to one of those checked addresses, so a
name cannot point the task somewhere the list refuses. By default only public addresses are allowed:
loopback, private (10/8, 172.16/12, 192.168/16, fc00::/7), shared (100.64/10), link-local (169.254/16 — cloud
metadata —, fe80::/10), unspecified, multicast, reserved and documentation ranges are refused; IPv6
forms that embed an IPv4 address (::ffff:a.b.c.d, 64:ff9b::/96, 2002::/16) are judged by that address.
`allow` adds CIDRs (e.g. `127.0.0.0/8` in tests); `deny` refuses CIDRs whatever else says.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from typing import Any

from pool_core import threads

from .errors import DestinationNotAllowed, HttpConnectError

__all__ = ["HttpPolicy", "IPAddress", "MiB", "address_kind", "resolve_allowed"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
MiB = 1 << 20
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


@dataclass(frozen=True)
class HttpPolicy:
    """The http task's limits: reachable addresses, connections per host, response size, trusted CAs."""

    #: CIDRs reachable in addition to public addresses (strings or networks).
    allow: tuple[Any, ...] = ()
    #: Whether public (globally routable unicast) addresses are reachable.
    allow_public: bool = True
    #: CIDRs never reachable, even if public or in `allow`.
    deny: tuple[Any, ...] = ()
    #: Connections open at once to one (scheme, host, port), in use or idle.
    max_per_host: int = 8
    #: Idle keep-alive connections kept across all hosts.
    max_idle: int = 100
    #: Seconds an idle keep-alive connection is kept before it is closed instead of reused.
    idle_timeout: float = 30.0
    #: Largest response body accepted; a larger one fails the request with ResponseTooLarge.
    max_response_bytes: int = 10 * MiB
    #: A PEM file of CA certificates to trust instead of the system's (certificates are always verified).
    ca_file: str | None = None
    _allow: tuple[IPNetwork, ...] = field(init=False, repr=False, compare=False)
    _deny: tuple[IPNetwork, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_allow", _networks(self.allow, "allow"))
        object.__setattr__(self, "_deny", _networks(self.deny, "deny"))
        if self.max_per_host < 1:
            raise ValueError(f"max_per_host must be >= 1, got {self.max_per_host}")
        if self.max_response_bytes < 0:
            raise ValueError(f"max_response_bytes must be >= 0, got {self.max_response_bytes}")

    def is_allowed(self, ip: IPAddress) -> bool:
        """Whether the task may connect to `ip`."""
        candidates = {ip, _embedded_ipv4(ip)} - {None}
        if any(addr in net for addr in candidates for net in self._deny):
            return False
        if any(addr in net for addr in candidates for net in self._allow):
            return True
        return self.allow_public and address_kind(ip) == "public"


def address_kind(ip: IPAddress) -> str:
    """`public`, or why not: loopback, private, link-local, unspecified, multicast, reserved, non-public."""
    ip = _embedded_ipv4(ip) or ip
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_multicast:
        return "multicast"
    if ip.is_reserved or (ip.version == 6 and ip.is_site_local):
        return "reserved"
    if ip.is_private:
        return "private"
    if not ip.is_global:
        return "non-public"
    return "public"


def resolve_allowed(host: str, port: int, policy: HttpPolicy) -> list[str]:
    """The addresses of `host` that `policy` allows, in resolver order; DestinationNotAllowed if none."""
    try:
        candidates = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            infos = threads.execute(socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM)
        except OSError as exc:
            raise HttpConnectError(f"cannot resolve {host!r}: {exc}") from None
        candidates = []
        for info in infos:
            ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            if ip not in candidates:
                candidates.append(ip)
    allowed = [str(ip) for ip in candidates if policy.is_allowed(ip)]
    if not allowed:
        refused = ", ".join(f"{ip} ({address_kind(ip)})" for ip in candidates) or "no address"
        raise DestinationNotAllowed(
            f"destination {host!r} is not allowed: it resolves to {refused}, which the http task's "
            "allow-list refuses (by default only public addresses are allowed)"
        )
    return allowed


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    if ip.version == 4:
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _networks(cidrs: Any, what: str) -> tuple[IPNetwork, ...]:
    if isinstance(cidrs, str):
        cidrs = [cidrs]
    try:
        return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)
    except ValueError as exc:
        raise ValueError(f"http policy: invalid {what} CIDR: {exc}") from None
