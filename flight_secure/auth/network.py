"""Where a caller comes from, as the limits count it: a host, reduced to its network.

Per-client limits (login failures, handshakes in progress) must count what one
attacker controls, not what one socket shows. :func:`peer_network` keys them:

* IPv4: the address (``10.1.2.3``);
* IPv6: the /64 it belongs to (``2001:db8:1:2::/64``): one subscriber gets a whole
  /64 and can use any address in it, so counting addresses would give an
  attacker unlimited fresh hosts;
* IPv4-mapped IPv6 (``::ffff:10.1.2.3``): the IPv4 address it maps, so a
  dual-stack listener counts the same client once;
* anything else (a Unix socket, a peer the engine does not name): as given.

Clients behind one NAT share an IPv4 address and so share its budgets.

:func:`shown_url` is a URL as messages and logs may show it, without credentials.
"""

from __future__ import annotations

import functools
import ipaddress
from urllib.parse import unquote, urlsplit

__all__ = ["IPV6_PREFIX", "peer_host", "peer_network", "shown_url"]

#: The IPv6 prefix length counted as one client network.
IPV6_PREFIX = 64


def peer_host(peer: str) -> str:
    """The host of a gRPC peer string, without port or brackets.

    ``ipv4:10.1.2.3:5000`` -> ``10.1.2.3``; ``ipv6:[::1]:5000`` and grpcio's
    ``ipv6:%5B::1%5D:5000`` -> ``::1``; anything else is returned unchanged.
    """
    kind, sep, rest = peer.partition(":")
    if not sep or kind not in ("ipv4", "ipv6"):
        return peer
    rest = unquote(rest)
    if rest.startswith("["):
        return rest[1:rest.find("]")] if "]" in rest else rest[1:]
    return rest.rpartition(":")[0] or rest


def peer_network(peer: str) -> str:
    """The network a gRPC peer string (or a bare address) is counted under."""
    return _host_network(peer_host(peer))


@functools.lru_cache(maxsize=4096)
def _host_network(host: str) -> str:
    """The network of one host (cached: ``ipaddress`` parses slowly, and a peer's
    host recurs with every connection and login it makes)."""
    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False))
    return str(address)


def shown_url(url: str) -> str:
    """``url`` as it may be shown in messages and logs: scheme, host, port and path;
    no credentials, query or fragment."""
    parts = urlsplit(url)
    host = parts.hostname
    if host is None:  # unix:///path/to/socket
        return f"{parts.scheme}://{parts.path}"
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    return f"{parts.scheme}://{netloc}{parts.path}"
