"""The SSRF policy of web_fetch: which addresses, URLs and resolved names are refused.

Several corpus entries (IPv4-compatible, 6to4, NAT64, zoned, multicast) are "global" to Python 3.11's
``ipaddress``: they are refused only because of guard's own rules, so each one proves a rule.
"""

from __future__ import annotations

import ipaddress

import pytest

from apps.webtools.guard import (
    MAX_URL_LENGTH,
    FetchRefused,
    Resolver,
    address_allowed,
    addresses_checked,
    system_resolve,
    url_checked,
)

REFUSED_ADDRESSES = [
    pytest.param("127.0.0.1", id="loopback"),
    pytest.param("127.42.0.7", id="loopback-not-dot-1"),
    pytest.param("0.0.0.0", id="unspecified-v4"),
    pytest.param("10.0.0.1", id="10/8"),
    pytest.param("10.255.255.254", id="10/8-top"),
    pytest.param("172.16.0.1", id="172.16/12"),
    pytest.param("172.31.255.254", id="172.16/12-top"),
    pytest.param("192.168.1.1", id="192.168/16"),
    pytest.param("100.64.0.1", id="100.64/10-cgnat"),
    pytest.param("100.127.255.254", id="100.64/10-top"),
    pytest.param("169.254.169.254", id="metadata-aws-gcp-azure"),
    pytest.param("169.254.170.2", id="metadata-ecs"),
    pytest.param("100.100.100.200", id="metadata-alibaba"),
    pytest.param("169.254.1.1", id="link-local-v4"),
    pytest.param("192.0.0.8", id="ietf-protocol-assignments"),
    pytest.param("224.0.0.1", id="multicast-v4"),
    pytest.param("255.255.255.255", id="broadcast"),
    pytest.param("::1", id="loopback-v6"),
    pytest.param("::", id="unspecified-v6"),
    pytest.param("fe80::1", id="link-local-v6"),
    pytest.param("fe80::1%eth0", id="link-local-v6-zoned"),
    pytest.param("2606:4700:4700::1111%eth0", id="global-v6-with-a-zone"),
    pytest.param("fc00::1", id="unique-local"),
    pytest.param("fd00:ec2::254", id="metadata-aws-v6"),
    pytest.param("fec0::1", id="site-local"),
    pytest.param("ff0e::1", id="multicast-v6"),
    pytest.param("::ffff:127.0.0.1", id="mapped-loopback"),
    pytest.param("::ffff:10.0.0.1", id="mapped-10/8"),
    pytest.param("::ffff:169.254.169.254", id="mapped-metadata"),
    pytest.param("::ffff:7f00:1", id="mapped-loopback-hex"),
    pytest.param("::127.0.0.1", id="compatible-loopback"),
    pytest.param("::10.0.0.1", id="compatible-10/8"),
    pytest.param("::ffff:0:10.0.0.1", id="translated-10/8"),
    pytest.param("2002:7f00:1::", id="6to4-loopback"),
    pytest.param("2002:a00:1::1", id="6to4-10/8"),
    pytest.param("2002:a9fe:a9fe::", id="6to4-metadata"),
    pytest.param("2001:0:4136:e378:8000:63bf:3fff:fdd2", id="teredo"),
    pytest.param("64:ff9b::7f00:1", id="nat64-loopback"),
    pytest.param("64:ff9b::a00:1", id="nat64-10/8"),
    pytest.param("64:ff9b::a9fe:a9fe", id="nat64-metadata"),
    pytest.param("64:ff9b:1::8.8.8.8", id="nat64-local-use"),
    pytest.param("2001:db8::1", id="documentation-v6"),
]

ALLOWED_ADDRESSES = [
    pytest.param("93.184.216.34", id="public-v4"),
    pytest.param("8.8.8.8", id="public-v4-dns"),
    pytest.param("2606:4700:4700::1111", id="public-v6"),
    pytest.param("::ffff:93.184.216.34", id="mapped-public"),
    pytest.param("64:ff9b::808:808", id="nat64-public"),
]


@pytest.mark.parametrize("address", REFUSED_ADDRESSES)
def test_it_refuses_every_address_in_the_corpus(address: str) -> None:
    assert address_allowed(address) is False


@pytest.mark.parametrize("address", ALLOWED_ADDRESSES)
def test_it_allows_public_addresses(address: str) -> None:
    assert address_allowed(address) is True


@pytest.mark.parametrize("text", ["example.com", "", "1", "010.0.0.1", "127.0.0.1:80", "[::1]"])
def test_it_refuses_what_is_not_an_ip_address(text: str) -> None:
    assert address_allowed(text) is False


@pytest.mark.parametrize("address", ["169.254.169.254", "100.100.100.200", "100.64.0.1", "224.0.0.1"])
def test_it_refuses_metadata_and_reserved_ranges_even_if_python_called_them_global(
    monkeypatch: pytest.MonkeyPatch, address: str
) -> None:
    monkeypatch.setattr(ipaddress.IPv4Address, "is_global", property(lambda self: True))
    assert ipaddress.ip_address(address).is_global
    assert address_allowed(address) is False


REFUSED_URLS = [
    pytest.param("ftp://example.com/file", id="ftp"),
    pytest.param("file:///etc/passwd", id="file"),
    pytest.param("javascript:alert(1)", id="javascript"),
    pytest.param("data:text/html,<script>alert(1)</script>", id="data"),
    pytest.param("gopher://example.com:70/_GET", id="gopher"),
    pytest.param("ws://example.com/", id="websocket"),
    pytest.param("example.com/page", id="no-scheme"),
    pytest.param("//example.com/page", id="scheme-relative"),
    pytest.param("http:///path", id="missing-host"),
    pytest.param("http://", id="empty-http"),
    pytest.param("http://user:hunter2@example.com/", id="userinfo"),
    pytest.param("http://user@example.com/", id="user-only"),
    pytest.param("http://example.com:0/", id="port-0"),
    pytest.param("http://example.com:70000/", id="port-too-big"),
    pytest.param("http://exa mple.com/", id="space-in-host"),
    pytest.param("http://[fe80::1%25eth0]/", id="zoned-ipv6-literal"),
    pytest.param("http://example.com/" + "a" * MAX_URL_LENGTH, id="huge-url"),
]


@pytest.mark.parametrize("url", REFUSED_URLS)
def test_it_refuses_urls_of_the_wrong_form(url: str) -> None:
    with pytest.raises(FetchRefused, match=r"^refused: "):
        url_checked(url)


def test_a_refusal_never_repeats_the_password_of_the_url() -> None:
    with pytest.raises(FetchRefused) as refused:
        url_checked("https://alice:hunter2@example.com/?token=abc")
    assert "hunter2" not in str(refused.value)
    assert "abc" not in str(refused.value)


def test_it_accepts_http_and_https_urls_and_normalises_the_host() -> None:
    assert url_checked("https://Example.COM/a?b=1").raw_host == b"example.com"
    assert url_checked("http://example.com:8080/").port == 8080
    assert url_checked("http://bücher.example/").raw_host == b"xn--bcher-kva.example"
    assert url_checked("http://[2606:4700:4700::1111]/").host == "2606:4700:4700::1111"


def fake_resolver(table: dict[str, list[str]], asked: list[str]) -> Resolver:
    async def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return table.get(host, [])

    return resolve


async def test_it_refuses_a_name_that_resolves_to_a_private_address() -> None:
    asked: list[str] = []
    resolve = fake_resolver({"example.internal": ["10.0.0.5"]}, asked)
    with pytest.raises(FetchRefused) as refused:
        await addresses_checked("example.internal", 80, resolve=resolve)
    assert (
        str(refused.value) == "refused: example.internal resolves to a private or reserved address (10.0.0.5)"
    )
    assert asked == ["example.internal"]


async def test_it_refuses_a_name_with_one_public_and_one_private_address() -> None:
    resolve = fake_resolver({"mixed.example": ["93.184.216.34", "127.0.0.1"]}, [])
    with pytest.raises(FetchRefused, match=r"\(127\.0\.0\.1\)"):
        await addresses_checked("mixed.example", 443, resolve=resolve)


async def test_it_refuses_a_name_that_resolves_to_nothing() -> None:
    resolve = fake_resolver({}, [])
    with pytest.raises(FetchRefused, match=r"nowhere\.example does not resolve to any address"):
        await addresses_checked("nowhere.example", 80, resolve=resolve)


async def test_it_returns_every_address_of_a_public_name() -> None:
    resolve = fake_resolver({"docs.example": ["93.184.216.34", "2606:4700:4700::1111"]}, [])
    assert await addresses_checked("docs.example", 443, resolve=resolve) == [
        "93.184.216.34",
        "2606:4700:4700::1111",
    ]


async def test_an_ip_literal_is_checked_without_asking_the_resolver() -> None:
    asked: list[str] = []
    resolve = fake_resolver({}, asked)
    assert await addresses_checked("93.184.216.34", 80, resolve=resolve) == ["93.184.216.34"]
    with pytest.raises(FetchRefused, match=r"^refused: ::1 is a private or reserved address$"):
        await addresses_checked("::1", 80, resolve=resolve)
    assert asked == []


async def test_it_uses_the_policy_it_is_given() -> None:
    resolve = fake_resolver({"docs.example.test": ["127.0.0.1"]}, [])
    allowed = await addresses_checked(
        "docs.example.test", 80, resolve=resolve, allowed={"127.0.0.1"}.__contains__
    )
    assert allowed == ["127.0.0.1"]


@pytest.mark.parametrize("name", ["localhost", "2130706433", "0x7f.1", "127.1"])
async def test_the_system_resolver_finds_loopback_behind_disguised_names_and_the_policy_refuses_it(
    name: str,
) -> None:
    # None of these needs the network: /etc/hosts and inet_aton's number forms.
    assert "127.0.0.1" in await system_resolve(name, 80)
    with pytest.raises(FetchRefused, match=rf"^refused: {name} resolves to a private or reserved address"):
        await addresses_checked(name, 80, resolve=system_resolve)


async def test_the_system_resolver_returns_an_ip_literal_as_it_is() -> None:
    assert await system_resolve("2606:4700:4700::1111", 443) == ["2606:4700:4700::1111"]
