"""The operator's host policy: mail hosts the service refuses outright, and the ports it dials.

Checked twice: when a row is validated (so no account is saved with a host it can never
reach) and by the probe itself, before any DNS or connection (an account saved before its
host was banned, or a preset host a later policy refuses).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

PortRange = tuple[int, int]  # inclusive

# The submission (25, 465, 587, 2525) and IMAP (143, 993) ports. Settings' default for
# PROBE_ALLOWED_PORTS spells the same list; a test holds the two together.
DEFAULT_ALLOWED_PORTS: tuple[PortRange, ...] = (
    (25, 25), (143, 143), (465, 465), (587, 587), (993, 993), (2525, 2525),
)
ALL_PORTS: tuple[PortRange, ...] = ((1, 65535),)

_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")


def normalise_host(host: str) -> str:
    """Lower case, without IPv6 brackets or the root's trailing dot, as rows store hosts."""
    return host.strip().strip("[]").rstrip(".").lower()


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def banned_host_entry(text: str) -> str:
    """One PROBE_BANNED_HOSTS entry, normalised; ValueError if it is not a host name or an IP.

    `example.com` and `.example.com` mean the same: the host and every name under it.
    """
    entry = normalise_host(text).lstrip(".")
    ip = _ip(entry)
    if ip is not None:
        return str(ip)
    labels = entry.split(".")
    if not entry or len(entry) > 253 or not all(_LABEL.match(label) for label in labels):
        raise ValueError(f"{text.strip()!r} is not a host name, a .domain suffix or an IP "
                         "address")
    return entry


@dataclass(frozen=True)
class HostPolicy:
    # Normalised entries (banned_host_entry): host names, each also banning its subdomains,
    # and IP addresses, banning that literal only.
    banned_hosts: tuple[str, ...] = ()
    allowed_ports: tuple[PortRange, ...] = DEFAULT_ALLOWED_PORTS

    def banned_entry(self, host: str) -> str | None:
        """The entry that bans host, or None."""
        if not self.banned_hosts:
            # Every probe asks this twice: parsing the name as an address (which fails, with
            # two exceptions, for every host name) costs more than the rest of the check.
            return None
        name = normalise_host(host)
        ip = _ip(name)
        for entry in self.banned_hosts:
            if ip is not None:
                # An address matches only the same address ("::1" and "0::1" alike).
                if _ip(entry) == ip:
                    return entry
            elif name == entry or name.endswith("." + entry):
                return entry
        return None

    def host_refusal(self, host: str) -> str | None:
        """Why host is refused, or None when it is allowed."""
        entry = self.banned_entry(host)
        if entry is None:
            return None
        scope = entry if normalise_host(host) == entry else f"{entry} and its subdomains"
        return f"{normalise_host(host)} is not allowed: this service refuses {scope}"

    def port_allowed(self, port: int) -> bool:
        return any(low <= port <= high for low, high in self.allowed_ports)

    def port_refusal(self, port: int) -> str | None:
        """Why port is refused, or None when it is allowed."""
        if self.port_allowed(port):
            return None
        return f"port {port} is not allowed (this service connects to {self.describe_ports()})"

    def describe_ports(self) -> str:
        return ", ".join(str(low) if low == high else f"{low}-{high}"
                         for low, high in self.allowed_ports)

    def refusal(self, host: str, port: int) -> str | None:
        """Why the probe must not dial host:port, or None."""
        return self.host_refusal(host) or self.port_refusal(port)


OPEN_POLICY = HostPolicy(allowed_ports=ALL_PORTS)


def parse_ports(text: str) -> tuple[PortRange, ...]:
    """"25,465,20000-29999" as sorted inclusive ranges; ValueError naming the bad part."""
    ranges: list[PortRange] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        match = re.fullmatch(r"(\d{1,5})(?:\s*-\s*(\d{1,5}))?", part)
        low = int(match.group(1)) if match else 0
        high = int(match.group(2) or low) if match else 0
        if not (match and 1 <= low <= high <= 65535):
            raise ValueError(f"{part!r} is not a port or a range like 20000-29999 "
                             "(ports are 1 to 65535)")
        ranges.append((low, high))
    if not ranges:
        raise ValueError("must list at least one port")
    return tuple(sorted(set(ranges)))


def parse_banned_hosts(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(banned_host_entry(p) for p in text.split(",") if p.strip()))
