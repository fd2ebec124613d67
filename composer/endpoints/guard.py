"""Which URLs the server may send requests to (server-side request forgery guard).

Contract: `check_url(url, allowed)` returns None when the server may call `url`, else raises
`EndpointRefused` (a `PermissionError`: HTTP 403) saying why:
- `allowed` is the operator's allowlist (`COMPOSER_ALLOWED_ENDPOINTS`: URL prefixes such
  as `http://127.0.0.1:8001,https://api.example.com`); empty = endpoint experts are off.
  A URL matches a prefix when scheme, host and port are equal (default ports filled in)
  and its path starts with the prefix's path at a "/" boundary: `http://a:8001` allows
  `http://a:8001/v1`, never `http://a:80011` or `http://a:8001.evil.com`.
- every address the host name resolves to (now: checked again before every call, so a
  name re-pointed later is caught at its next call) must not be link-local (169.254/16,
  fe80::/10: cloud metadata lives there), a known metadata address, unspecified (0.0.0.0,
  ::) or multicast/broadcast, even when the allowlist names the host.
Loopback and private addresses are allowed when allowlisted (a vLLM next door is the point).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}
BLOCKED = [
    ipaddress.ip_network(n)
    for n in (
        "169.254.0.0/16",  # link-local, cloud metadata (169.254.169.254)
        "fe80::/10",
        "100.100.100.200/32",  # Alibaba Cloud metadata
        "fd00:ec2::254/128",  # AWS metadata over IPv6
        "0.0.0.0/8",
        "::/128",
        "224.0.0.0/4",
        "ff00::/8",
        "255.255.255.255/32",
    )
]


class EndpointRefused(PermissionError):
    """The server may not call this URL (not allowlisted, or a forbidden address)."""


def _origin(url: str) -> tuple[str, str, int, str]:
    p = urlsplit(url)
    scheme, host = p.scheme.lower(), (p.hostname or "").lower().rstrip(".")
    return scheme, host, p.port or DEFAULT_PORTS.get(scheme, 0), p.path.rstrip("/")


def allowlisted(url: str, allowed: tuple[str, ...]) -> bool:
    try:
        scheme, host, port, path = _origin(url)
    except ValueError:  # a malformed URL (bad port) matches nothing
        return False
    for prefix in allowed:
        try:
            s, h, po, pa = _origin(prefix.strip())
        except ValueError:
            continue
        if (s, h, po) == (scheme, host, port) and (path == pa or path.startswith(pa + "/")):
            return True
    return False


def forbidden_address(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr in net for net in BLOCKED if net.version == addr.version)


def check_url(url: str, allowed: tuple[str, ...]) -> None:
    if not allowed:
        raise EndpointRefused(
            "endpoint experts are disabled on this server: the operator allows endpoint URLs "
            "with COMPOSER_ALLOWED_ENDPOINTS (comma-separated URL prefixes)"
        )
    if not allowlisted(url, allowed):
        raise EndpointRefused(f"the endpoint URL {url!r:.120} is not allowed (COMPOSER_ALLOWED_ENDPOINTS)")
    _, host, port, _ = _origin(url)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as e:
        raise EndpointRefused(f"the endpoint host {host!r} does not resolve ({e.strerror or e})") from None
    bad = sorted({i[4][0] for i in infos if forbidden_address(i[4][0])})
    if bad:
        raise EndpointRefused(
            f"the endpoint host {host!r} resolves to a link-local, metadata or unspecified address "
            f"({', '.join(bad)}): refused"
        )
