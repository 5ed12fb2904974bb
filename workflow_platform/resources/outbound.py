"""Where workflow steps may send HTTP requests: the WFP_HTTP_ALLOW policy.

A step is code a submitter controls, and the platform's own services (Dagster's GraphQL, NATS monitoring, the
object store, PostgreSQL) listen on loopback or a private network. So by default (`public`) a step reaches
globally routable addresses only; anything else must be listed. Entries, comma-separated:

- `public`: any address that is globally routable (every address the name resolves to);
- `api.example.com` or `*.example.com`: those host names, on any port;
- `http://127.0.0.1:8080`: that origin (scheme, host, port);
- `10.1.0.0/16`: addresses in that network.

Registered HTTP plugins (`POST /api/plugins`) must pass the same policy when they are registered; their calls
then go to their base URL. Every redirect is checked again.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from workflow_platform.settings import ServiceSettings, variable

DEFAULT_POLICY = "public"
ENV_VAR = variable("http_allow")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class OutboundRefused(Exception):
    """The URL is outside WFP_HTTP_ALLOW."""


@dataclass(frozen=True)
class OutboundPolicy:
    public: bool = True
    hosts: frozenset[str] = frozenset()
    domains: tuple[str, ...] = ()  # ".example.com" for *.example.com
    origins: frozenset[tuple[str, str, int]] = frozenset()
    networks: tuple[IPNetwork, ...] = ()
    text: str = DEFAULT_POLICY

    @classmethod
    def parse(cls, text: str) -> OutboundPolicy:
        public, hosts, domains, origins, networks = False, set(), [], set(), []
        for entry in (part.strip() for part in text.split(",")):
            if not entry:
                continue
            if entry == "public":
                public = True
            elif "://" in entry:
                origins.add(_origin(entry))
            elif entry.startswith("*."):
                domains.append(entry[1:].lower())
            elif "/" in entry:
                try:
                    networks.append(ipaddress.ip_network(entry, strict=False))
                except ValueError:
                    raise ValueError(f"{ENV_VAR}: {entry!r} is not a network (e.g. 10.0.0.0/8)") from None
            else:
                hosts.add(entry.lower())
        return cls(public, frozenset(hosts), tuple(domains), frozenset(origins), tuple(networks), text)

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> OutboundPolicy:
        return cls.parse(DEFAULT_POLICY if settings.http_allow is None else settings.http_allow)

    def check(self, url: str) -> None:
        """Raise OutboundRefused unless `url` may be requested."""
        try:
            parts = urlsplit(url)
            host, port = (parts.hostname or "").lower(), parts.port
        except ValueError as error:  # e.g. a port beyond 65535
            raise OutboundRefused(f"{url}: {error}") from None
        if parts.scheme not in ("http", "https") or not host:
            raise OutboundRefused(f"{url}: only http(s) URLs with a host")
        port = port or _DEFAULT_PORTS[parts.scheme]
        if (parts.scheme, host, port) in self.origins:
            return
        if host in self.hosts or any(host.endswith(domain) for domain in self.domains):
            return
        addresses = _addresses(host, port)
        if self.networks and all(any(a in n for n in self.networks) for a in addresses):
            return
        if self.public and all(a.is_global for a in addresses):
            return
        private = sorted({str(a) for a in addresses if not a.is_global}) or sorted(map(str, addresses))
        raise OutboundRefused(
            f"{url}: {host} ({', '.join(private)}) is not allowed by {ENV_VAR}={self.text!r}; the platform's "
            f"own services and private networks are reachable only when listed (e.g. {ENV_VAR}=public,"
            f"{parts.scheme}://{parts.netloc})"
        )


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(entry: str) -> tuple[str, str, int]:
    parts = urlsplit(entry)
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"{ENV_VAR}: {entry!r} is not an http(s) origin")
    return parts.scheme, parts.hostname.lower(), parts.port or _DEFAULT_PORTS[parts.scheme]


def _addresses(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as error:  # UnicodeError: not a valid international name
        raise OutboundRefused(f"{host!r}: cannot resolve ({error})") from None
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
