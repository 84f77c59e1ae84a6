"""What the server may connect to when a model asks it to fetch a URL.

A model picks the URLs, so web_fetch is a server-side request forgery risk: a crafted URL could aim the server
at its own loopback services, the private network or a cloud metadata endpoint. The policy here is narrow on
purpose: an address is accepted only when ``ipaddress`` calls it globally reachable, and an IPv6 address that
carries an IPv4 one inside (mapped, compatible, 6to4, Teredo, NAT64) must carry a global one. Names are
resolved once, here, and the caller connects to an address that passed the check, so a second DNS answer (DNS
rebinding) never gets a say.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable

import httpx

MAX_URL_LENGTH = 2048
Resolver = Callable[[str, int], Awaitable[list[str]]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud metadata endpoints (AWS/GCP/Azure, ECS, Alibaba, AWS over IPv6): refused by name, so no change in
# ipaddress' tables could ever let one through.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
)
# Not globally reachable, yet some are "global" to Python 3.11's ipaddress (its tables grew in later
# releases: multicast, 192.0.0/24, site-local, local-use NAT64); listed so the verdict does not depend on
# the interpreter's patch release.
_DENIED_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        *("0.0.0.0/8", "100.64.0.0/10", "192.0.0.0/24", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4"),
        *("64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32", "fc00::/7", "fe80::/10", "fec0::/10"),
        "ff00::/8",
    )
)
# IPv6 ranges whose low 32 bits are an IPv4 address the packet ends up at: NAT64, IPv4-compatible and
# IPv4-translated (SIIT). Mapped, 6to4 and Teredo have ipaddress properties of their own.
_LOW_32_BITS_IPV4 = tuple(ipaddress.IPv6Network(n) for n in ("64:ff9b::/96", "::/96", "::ffff:0:0:0/96"))
# A host name after IDNA encoding (httpx gives it lower-cased); underscores occur in real names.
_HOST_NAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\.?")


class FetchRefused(Exception):
    """The policy said no. The message is for a person (and the model reading the tool result): it names the
    host or address, never the whole URL, whose query string may carry a token."""


def _plain_allowed(ip: IPAddress) -> bool:
    return (
        ip.is_global
        and not ip.is_multicast
        and ip not in METADATA_ADDRESSES
        and not any(ip in network for network in _DENIED_NETWORKS)
    )


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    found = [v4 for v4 in (ip.ipv4_mapped, ip.sixtofour) if v4 is not None]
    if ip.teredo is not None:
        found.extend(ip.teredo)  # server and client: both take part in the tunnel
    if any(ip in network for network in _LOW_32_BITS_IPV4):
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF))
    return found


def address_allowed(address: str) -> bool:
    """True only for a globally reachable IP address (and any IPv4 address embedded in it); False otherwise,
    including for anything that is not an IP address."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        # A zone (fe80::1%eth0) picks a local interface: never something a model should choose.
        if ip.scope_id is not None:
            return False
        if not all(_plain_allowed(v4) for v4 in _embedded_ipv4(ip)):
            return False
    return _plain_allowed(ip)


def ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def url_checked(url: str) -> httpx.URL:
    """The parsed URL if its form is acceptable (http/https, a valid host, no credentials, a real port),
    else FetchRefused. Where it points is ``addresses_checked``'s business."""
    if len(url) > MAX_URL_LENGTH:
        raise FetchRefused(f"refused: the URL is longer than {MAX_URL_LENGTH} characters")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise FetchRefused("refused: the URL is not valid") from None
    if parsed.scheme not in ("http", "https"):
        scheme = parsed.scheme[:20] or "none"
        raise FetchRefused(f"refused: only http and https URLs can be fetched (this one's scheme: {scheme})")
    if parsed.userinfo:
        raise FetchRefused("refused: the URL carries a user name or password")
    host = parsed.raw_host.decode("ascii", errors="replace")
    if not host:
        raise FetchRefused("refused: the URL has no host")
    if "%" in host or not (ip_literal(host) or (len(host) <= 253 and _HOST_NAME.fullmatch(host))):
        raise FetchRefused("refused: the URL's host is not a valid host name or IP address")
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise FetchRefused(f"refused: port {parsed.port} is out of range")
    return parsed


async def system_resolve(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for ``host``, in its order; [] when the name does not resolve.
    Runs in the loop's executor: a blocking lookup would stall every other request on the event loop."""
    if ip_literal(host):
        return [host]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return []
    addresses = [str(info[4][0]) for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6)]
    return list(dict.fromkeys(addresses))


async def addresses_checked(
    host: str, port: int, *, resolve: Resolver, allowed: Callable[[str], bool] = address_allowed
) -> list[str]:
    """The addresses of ``host``, all of them allowed, else FetchRefused. One bad address refuses the name:
    a client may pick any of them, and an attacker controls which ones a name has."""
    addresses = [host] if ip_literal(host) else await resolve(host, port)
    if not addresses:
        raise FetchRefused(f"refused: {host} does not resolve to any address")
    for address in addresses:
        if not allowed(address):
            if address == host:
                raise FetchRefused(f"refused: {host} is a private or reserved address")
            raise FetchRefused(f"refused: {host} resolves to a private or reserved address ({address})")
    return addresses
