"""Server-side fetch of the ``url`` field, guarded (off unless ``w2x serve --allow-url``).

The original fetches with ``verify_ca=false`` and no address check (web.lua:123-149),
so anyone can make it request internal services. Here:

* http and https only; TLS certificates and host names are verified;
* the host name is resolved once, every address is checked, and the connection goes to
  a checked address (no second lookup that DNS rebinding could change); loopback,
  private, link-local, multicast, reserved and unspecified addresses are refused,
  IPv4-mapped IPv6 addresses by their IPv4 address;
* at most ``max_redirects`` redirects, each target checked the same way;
* the body is capped at ``max_bytes`` and the whole fetch at ``timeout`` seconds.
"""
from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Callable

from w2x.web.errors import WebError, bad_field, too_large

CHUNK_BYTES = 64 * 1024
REDIRECT_CODES = (301, 302, 303, 307, 308)
DEFAULT_PORTS = {"http": 80, "https": 443}
Resolver = Callable[[str, int], list[str]]


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (IPv4 and IPv6)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def is_public(address: str) -> bool:
    """True for a globally routable unicast address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_multicast or ip.is_loopback or ip.is_link_local
                                 or ip.is_private or ip.is_reserved or ip.is_unspecified)


@dataclass(frozen=True)
class Fetched:
    data: bytes
    name: str            # the last path segment of the final URL, for the output name
    content_type: str


@dataclass
class UrlFetcher:
    """Fetches one URL under the guard; ``allowed`` lists extra addresses to accept
    (tests use it for a loopback server), ``resolver`` replaces DNS (tests)."""
    max_bytes: int = 5 * 1024 * 1024
    timeout: float = 20.0
    max_redirects: int = 2
    allowed: frozenset[str] = frozenset()
    resolver: Resolver = field(default=resolve)
    ssl_context: ssl.SSLContext = field(default_factory=ssl.create_default_context)

    def fetch(self, url: str) -> Fetched:
        """The body at ``url``; WebError 400 (refused, failed), 413 (too large)."""
        deadline = time.monotonic() + self.timeout
        for _ in range(self.max_redirects + 1):
            parts, address = self._check(url)
            status, headers, body = self._get(parts, address, deadline)
            if status in REDIRECT_CODES and headers.get("location"):
                url = urllib.parse.urljoin(url, headers["location"])
                continue
            if status != 200:
                raise bad_field(f"The URL answered HTTP {status}; check that it links to an image.")
            name = urllib.parse.unquote(parts.path.rsplit("/", 1)[-1])
            return Fetched(body, name, headers.get("content-type", ""))
        raise bad_field(f"The URL redirected more than {self.max_redirects} times.")

    def _check(self, url: str):
        parts = urllib.parse.urlsplit(url.strip())
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise bad_field("Only http:// and https:// URLs of images can be fetched.")
        try:
            port = parts.port or DEFAULT_PORTS[parts.scheme]
            addresses = self.resolver(parts.hostname, port)
        except (OSError, ValueError, UnicodeError):
            raise bad_field(f"The host {parts.hostname!r} could not be resolved.") from None
        refused = [a for a in addresses if not (is_public(a) or a in self.allowed)]
        if refused or not addresses:
            raise bad_field(f"The host {parts.hostname!r} has a loopback, private or otherwise "
                            "internal address, which this server does not fetch from.")
        return parts, addresses[0]

    def _get(self, parts, address: str, deadline: float):
        port = parts.port or DEFAULT_PORTS[parts.scheme]
        timeout = max(deadline - time.monotonic(), 0.001)
        if parts.scheme == "https":
            conn = _PinnedHTTPS(parts.hostname, address, port, timeout, self.ssl_context)
        else:
            conn = _PinnedHTTP(parts.hostname, address, port, timeout)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        try:
            conn.request("GET", path, headers={"User-Agent": "w2x-web", "Accept": "image/*"})
            resp = conn.getresponse()
            headers = {k.lower(): v for k, v in resp.getheaders()}
            if resp.status != 200:
                return resp.status, headers, b""
            declared = int(headers.get("content-length") or 0)
            if self.max_bytes and declared > self.max_bytes:
                raise self._too_large()
            body = bytearray()
            while chunk := resp.read(CHUNK_BYTES):
                body += chunk
                if self.max_bytes and len(body) > self.max_bytes:
                    raise self._too_large()
                if time.monotonic() > deadline:
                    raise socket.timeout
            return resp.status, headers, bytes(body)
        except ssl.SSLError as e:
            raise bad_field(f"The TLS certificate of {parts.hostname!r} could not be "
                            f"verified ({getattr(e, 'reason', None) or e}).") from None
        except (socket.timeout, TimeoutError):
            raise bad_field(f"Fetching the URL took longer than {self.timeout:g} s.") from None
        except (OSError, http.client.HTTPException) as e:
            raise bad_field(f"The URL could not be fetched ({type(e).__name__}).") from None
        finally:
            conn.close()

    def _too_large(self) -> WebError:
        return too_large(f"The image at the URL is larger than {self.max_bytes} bytes.")


class _PinnedHTTP(http.client.HTTPConnection):
    """HTTP to a checked ``address``, with ``host`` in the Host header."""

    def __init__(self, host, address, port, timeout):
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self):
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to a checked ``address``; the certificate is verified against ``host``."""

    def __init__(self, host, address, port, timeout, context):
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address
        self._ctx = context

    def connect(self):
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._ctx.wrap_socket(sock, server_hostname=self.host)
