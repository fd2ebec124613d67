"""The SSRF guard: which URLs the server may call (composer.endpoints.guard), as a table."""

from __future__ import annotations

import socket

import pytest

from composer.endpoints import EndpointPool
from composer.endpoints.guard import EndpointRefused, allowlisted, check_url, forbidden_address

ALLOWED = ("http://127.0.0.1:800", "https://api.example.com/openai", "http://vllm.internal:8000/v1/")

PREFIXES = [
    ("http://127.0.0.1:800/v1", True),
    ("http://127.0.0.1:800", True),
    ("http://127.0.0.1:8001/v1", False),  # another port that starts with the same digits
    ("https://127.0.0.1:800/v1", False),  # another scheme
    ("http://127.0.0.1:99999/v1", False),  # no port at all
    ("https://api.example.com/openai/v1", True),
    ("https://api.example.com/openai-evil/v1", False),  # a path that only starts like the prefix
    ("https://api.example.com:443/openai", True),  # the default port written out
    ("https://api.example.com.evil.net/openai", False),
    ("http://vllm.internal:8000/v1", True),
    ("http://VLLM.internal:8000/v1", True),  # host names are case-insensitive
    ("http://vllm.internal:8000/v2", False),
]


@pytest.mark.parametrize("url, ok", PREFIXES)
def test_allowlist_matches_origin_and_path_boundaries(url, ok):
    assert allowlisted(url, ALLOWED) is ok


ADDRESSES = [
    ("169.254.169.254", True),
    ("169.254.1.1", True),
    ("fe80::1", True),
    ("fd00:ec2::254", True),
    ("100.100.100.200", True),
    ("0.0.0.0", True),
    ("::", True),
    ("::ffff:169.254.169.254", True),  # IPv4-mapped IPv6 of the metadata address
    ("224.0.0.1", True),
    ("127.0.0.1", False),
    ("::1", False),
    ("10.0.0.5", False),
    ("192.168.1.20", False),
]


@pytest.mark.parametrize("ip, bad", ADDRESSES)
def test_forbidden_addresses(ip, bad):
    assert forbidden_address(ip) is bad


def test_no_allowlist_means_endpoints_are_off():
    with pytest.raises(EndpointRefused, match="COMPOSER_ALLOWED_ENDPOINTS"):
        check_url("http://127.0.0.1:8001/v1", ())


def test_a_name_resolving_to_a_metadata_address_is_refused(monkeypatch):
    real = socket.getaddrinfo

    def resolve(host, port, *a, **kw):  # a fake DNS around the unit: the name points at metadata
        if host == "innocent.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", port))]
        return real(host, port, *a, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    with pytest.raises(EndpointRefused, match="link-local"):
        check_url("http://innocent.example/v1", ("http://innocent.example",))
    check_url("http://127.0.0.1:800/v1", ALLOWED)  # loopback, allowlisted: fine


def test_every_call_is_checked_again(tmp_path):
    """An endpoint registered while allowed is not called once the allowlist drops it."""
    from registry import Registry

    reg = Registry(home=tmp_path)
    reg.register_endpoint("far", {"url": "http://127.0.0.1:1/v1", "model": "m"})
    (result,) = EndpointPool(reg, allowed=("http://127.0.0.1:2",)).generate("far", ["hi"], {})
    assert result.reason == "refused" and "not allowed" in str(result)
