"""web_fetch against a real HTTP server on loopback, with fake DNS.

Loopback is (rightly) refused by the default policy, so tests that need a page resolve made-up names such as
``docs.example.test`` (which real DNS does not know) to 127.0.0.1 and pass a policy that allows exactly that
address. The server records every request, so a test can tell that a refused hop never reached it, and which
``Host`` the request carried.
"""

from __future__ import annotations

import asyncio
import datetime
import gzip
import ssl
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from apps.webtools.fetch import DEFAULT_LIMITS, USER_AGENT, FetchedPage, FetchFailed, FetchLimits, web_fetch
from apps.webtools.guard import FetchRefused, Resolver, address_allowed
from tests.fakes.web import (
    LOOPBACK_ONLY,
    NAMES,
    FakeDNS,
    Handler,
    Loopback,
    Seen,
    endless,
    loopback_or_default,
    only,
    redirect,
    reply,
)


@pytest.fixture
async def server() -> AsyncIterator[Loopback]:
    async with Loopback() as running:
        yield running


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """A client that carries a cookie and a token of its own: web_fetch must pass on neither."""
    async with httpx.AsyncClient(
        trust_env=False, cookies={"session": "s3cret"}, headers={"Authorization": "Bearer s3cret"}
    ) as shared:
        yield shared


async def fetch(
    url: str,
    client: httpx.AsyncClient,
    *,
    resolve: Resolver | None = None,
    allowed: Callable[[str], bool] = LOOPBACK_ONLY,
    limits: FetchLimits = DEFAULT_LIMITS,
) -> FetchedPage:
    """web_fetch with the test DNS and 127.0.0.1 allowed, unless told otherwise."""
    resolve = resolve or FakeDNS(NAMES)
    return await web_fetch(url, client=client, resolve=resolve, allowed=allowed, limits=limits)


PAGE = b"""<!doctype html><html><head><title>Fish &amp; Chips</title>
<style>body { color: red }</style><script>var secret = "do not read";</script></head>
<body><noscript>enable js</noscript><h1>Menu</h1>
<p>Cod &lt;3 and   chips,\n  &eacute;t&eacute; &#8212; 5&nbsp;&euro;</p>
<ul><li>one</li><li>two</li></ul><template><p>hidden</p></template><svg><title>icon</title></svg>
<div>last<br>line</div></body></html>"""


async def test_it_reads_an_html_page_through_the_checked_address_with_the_real_host(
    server: Loopback, client: httpx.AsyncClient
) -> None:
    server.routes["/menu?x=1"] = reply(200, PAGE)
    dns = FakeDNS(NAMES)
    page = await web_fetch(
        f"http://docs.example.test:{server.port}/menu?x=1",
        client=client,
        resolve=dns,
        allowed=only("127.0.0.1"),
    )
    assert page.title == "Fish & Chips"
    assert page.text == "Menu\n\nCod <3 and chips, été — 5 €\n\n- one\n- two\n\nlast\nline"
    assert (page.status, page.content_type) == (200, "text/html")
    assert page.url == f"http://docs.example.test:{server.port}/menu?x=1"
    # The name exists only in the fake DNS: one lookup, then a connection to the address it gave.
    assert dns.asked == ["docs.example.test"]
    headers = server.seen[0].headers
    assert headers["host"] == f"docs.example.test:{server.port}"
    assert headers["user-agent"] == USER_AGENT
    # No keep-alive: the pool is keyed by IP address, and a connection must never serve another name.
    assert headers["connection"] == "close"
    assert "cookie" not in headers
    assert "authorization" not in headers


async def test_it_follows_redirects_checking_each_hop_and_reports_the_final_url(
    server: Loopback, client: httpx.AsyncClient
) -> None:
    server.routes["/old"] = redirect("/moved", 301, Set_Cookie="sid=abc; Path=/")
    server.routes["/moved"] = redirect(f"http://other.example.test:{server.port}/new", 307)
    server.routes["/new"] = reply(200, b"<title>New</title><p>here</p>")
    dns = FakeDNS(NAMES)
    page = await web_fetch(
        f"http://docs.example.test:{server.port}/old", client=client, resolve=dns, allowed=only("127.0.0.1")
    )
    assert (page.url, page.title, page.text) == (
        f"http://other.example.test:{server.port}/new",
        "New",
        "here",
    )
    assert server.paths() == ["/old", "/moved", "/new"]
    assert dns.asked == ["docs.example.test", "docs.example.test", "other.example.test"]
    assert [seen.headers["host"].split(":")[0] for seen in server.seen] == [
        "docs.example.test",
        "docs.example.test",
        "other.example.test",
    ]
    assert all("cookie" not in seen.headers for seen in server.seen)


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        pytest.param("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is", id="metadata"),
        pytest.param("http://100.100.100.200/", "100.100.100.200 is a private", id="metadata-alibaba"),
        pytest.param("http://10.0.0.1/", "10.0.0.1 is a private", id="10/8"),
        pytest.param("http://internal.example.test/", r"resolves .*\(10.0.0.5\)", id="name-to-10/8"),
        pytest.param("http://[::1]:{port}/secret", "::1 is a private", id="ipv6-loopback"),
        pytest.param("http://[::ffff:127.0.0.1]:{port}/secret", "::ffff:127.0.0.1 is", id="mapped-loopback"),
        pytest.param("http://[2002:7f00:1::]:{port}/secret", "2002:7f00:1:: is", id="6to4-loopback"),
        pytest.param("file:///etc/passwd", "only http and https", id="file-scheme"),
        pytest.param("http://u:p@docs.example.test:{port}/secret", "user name or password", id="userinfo"),
    ],
)
async def test_it_refuses_a_redirect_from_an_allowed_host_to_a_private_one(
    server: Loopback, client: httpx.AsyncClient, location: str, reason: str
) -> None:
    server.routes["/go"] = redirect(location.format(port=server.port))
    dns = FakeDNS({**NAMES, "internal.example.test": ["10.0.0.5"]})
    with pytest.raises(FetchRefused, match=f"^refused: .*{reason}"):
        await web_fetch(
            f"http://docs.example.test:{server.port}/go",
            client=client,
            resolve=dns,
            allowed=loopback_or_default,
        )
    assert server.paths() == ["/go"]


@pytest.mark.parametrize("location", ["http://127.0.0.1:{port}/secret", "http://localhost:{port}/secret"])
async def test_it_refuses_a_redirect_back_to_loopback_that_only_the_first_hop_was_allowed(
    server: Loopback, client: httpx.AsyncClient, location: str
) -> None:
    server.routes["/go"] = redirect(location.format(port=server.port))
    asked: list[str] = []

    def loopback_on_the_first_hop_only(address: str) -> bool:
        asked.append(address)
        return (len(asked) == 1 and address == "127.0.0.1") or address_allowed(address)

    dns = FakeDNS({**NAMES, "localhost": ["127.0.0.1"]})
    with pytest.raises(FetchRefused, match=r"127\.0\.0\.1|localhost"):
        await web_fetch(
            f"http://docs.example.test:{server.port}/go",
            client=client,
            resolve=dns,
            allowed=loopback_on_the_first_hop_only,
        )
    assert server.paths() == ["/go"]


async def test_it_refuses_more_redirects_than_the_limit(server: Loopback, client: httpx.AsyncClient) -> None:
    server.routes["/loop"] = redirect("/loop")
    with pytest.raises(FetchRefused, match="more than 3 redirects"):
        await fetch(
            f"http://docs.example.test:{server.port}/loop", client, limits=FetchLimits(max_redirects=3)
        )
    assert len(server.seen) == 4


async def test_it_stops_reading_an_endless_body_at_max_bytes(
    server: Loopback, client: httpx.AsyncClient
) -> None:
    server.routes["/big"] = endless(b"x" * 4096)
    limits = FetchLimits(max_bytes=50_000, max_text_chars=1_000_000, deadline_s=5)
    started = time.monotonic()
    page = await fetch(f"http://docs.example.test:{server.port}/big", client, limits=limits)
    assert time.monotonic() - started < 2
    assert page.text == "x" * 50_000 + "\n\n[truncated: only the first 50000 bytes of the page were read]"


async def test_it_caps_a_compressed_body_by_its_decompressed_size(
    server: Loopback, client: httpx.AsyncClient
) -> None:
    bomb = gzip.compress(b"a" * 10_000_000, compresslevel=9)
    assert len(bomb) < 20_000
    server.routes["/bomb"] = reply(200, bomb, "text/plain", Content_Encoding="gzip")
    page = await fetch(
        f"http://docs.example.test:{server.port}/bomb", client, limits=FetchLimits(max_bytes=100_000)
    )
    assert page.text.startswith("a" * 20_000 + "\n\n[truncated: only the first 100000 bytes")
    assert page.text.endswith("[truncated: the text is cut at 20000 characters]")


async def test_it_reads_a_gzip_page_and_refuses_encodings_it_cannot_bound(
    server: Loopback, client: httpx.AsyncClient
) -> None:
    server.routes["/gz"] = reply(
        200, gzip.compress(b"<title>Zipped</title><p>ok</p>"), Content_Encoding="gzip"
    )
    server.routes["/br"] = reply(200, b"\x0b\x02\x80hi\x03", Content_Encoding="br")
    page = await fetch(f"http://docs.example.test:{server.port}/gz", client)
    assert (page.title, page.text) == ("Zipped", "ok")
    with pytest.raises(FetchRefused, match="compressed as br"):
        await fetch(f"http://docs.example.test:{server.port}/br", client)


def slow_redirect(location: str, pause_s: float) -> Handler:
    async def handler(seen: Seen, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(pause_s)
        await redirect(location)(seen, writer)

    return handler


async def never_answer(seen: Seen, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(3600)


@pytest.mark.parametrize("path", ["/trickle", "/silent", "/slow-hops"])
async def test_one_deadline_covers_the_whole_fetch(
    server: Loopback, client: httpx.AsyncClient, path: str
) -> None:
    # A byte every 50 ms: no per-read timeout would ever fire.
    server.routes["/trickle"] = endless(b"x", pause_s=0.05)
    server.routes["/silent"] = never_answer
    # Each hop is well inside the deadline; all of them together are not.
    server.routes["/slow-hops"] = slow_redirect("/slow-hops", 0.2)
    started = time.monotonic()
    async with asyncio.timeout(5):  # fails the test, rather than hanging it, if there is no deadline
        with pytest.raises(FetchFailed, match=r"^gave up: the fetch took longer than 0\.5 s$"):
            await fetch(
                f"http://docs.example.test:{server.port}{path}",
                client,
                limits=FetchLimits(deadline_s=0.5, max_redirects=50),
            )
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize("content_type", ["image/png", "application/octet-stream", "text/javascript", None])
async def test_it_refuses_content_types_that_are_not_readable_pages(
    server: Loopback, client: httpx.AsyncClient, content_type: str | None
) -> None:
    server.routes["/file"] = reply(200, b"\x89PNG\r\n", content_type)
    with pytest.raises(FetchRefused, match=r"which is not a readable page$"):
        await fetch(f"http://docs.example.test:{server.port}/file", client)


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/json", "text/markdown; charset=utf-8", "text/csv", "TEXT/PLAIN"],
)
async def test_it_returns_readable_non_html_types_as_they_are(
    server: Loopback, client: httpx.AsyncClient, content_type: str
) -> None:
    server.routes["/doc"] = reply(200, b'{"a": "<b>1</b>"}\n', content_type)
    page = await fetch(f"http://docs.example.test:{server.port}/doc", client)
    assert (page.title, page.text) == ("", '{"a": "<b>1</b>"}')
    assert page.content_type == content_type.split(";")[0].lower()


@pytest.mark.parametrize(("status", "words"), [(404, "404 Not Found"), (500, "500 Internal Server Error")])
async def test_http_errors_fail_with_the_status_in_words(
    server: Loopback, client: httpx.AsyncClient, status: int, words: str
) -> None:
    server.routes["/page"] = reply(status, b"<p>oops</p>")
    with pytest.raises(FetchFailed, match=f"^docs.example.test answered {words}$"):
        await fetch(f"http://docs.example.test:{server.port}/page", client)


async def test_nul_characters_are_replaced(server: Loopback, client: httpx.AsyncClient) -> None:
    server.routes["/html"] = reply(200, b"<title>a\x00b</title><p>c\x00d</p>")
    server.routes["/text"] = reply(200, b"e\x00f", "text/plain")
    page = await fetch(f"http://docs.example.test:{server.port}/html", client)
    assert (page.title, page.text) == ("a\ufffdb", "c\ufffdd")
    assert (await fetch(f"http://docs.example.test:{server.port}/text", client)).text == "e\ufffdf"


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("text/plain; charset=iso-8859-1", "caf\u00e9 ol\u00e9"),
        ('text/plain; charset="windows-1252"', "caf\u00e9 ol\u00e9"),
        ("text/plain; charset=no-such-charset", "caf\ufffd ol\ufffd"),
        ("text/plain; charset=base64", "caf\ufffd ol\ufffd"),
        ("text/plain", "caf\ufffd ol\ufffd"),
    ],
)
async def test_it_decodes_with_the_declared_charset_and_falls_back_to_utf8(
    server: Loopback, client: httpx.AsyncClient, content_type: str, expected: str
) -> None:
    server.routes["/latin"] = reply(200, b"caf\xe9 ol\xe9", content_type)
    assert (await fetch(f"http://docs.example.test:{server.port}/latin", client)).text == expected


async def test_the_text_is_cut_at_max_text_chars_with_a_note(
    server: Loopback, client: httpx.AsyncClient
) -> None:
    server.routes["/long"] = reply(200, b"abcdefghijklmnop", "text/plain")
    page = await fetch(
        f"http://docs.example.test:{server.port}/long", client, limits=FetchLimits(max_text_chars=10)
    )
    assert page.text == "abcdefghij\n\n[truncated: the text is cut at 10 characters]"


@pytest.mark.parametrize(
    "url",
    [
        "ftp://docs.example.test/",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "data:text/plain,hi",
        "gopher://x/",
    ],
)
async def test_it_refuses_other_schemes_before_any_lookup_or_connection(
    server: Loopback, client: httpx.AsyncClient, url: str
) -> None:
    dns = FakeDNS(NAMES)
    with pytest.raises(FetchRefused, match="only http and https"):
        await fetch(url, client, resolve=dns)
    assert dns.asked == []
    assert server.seen == []


async def test_it_refuses_a_name_that_resolves_to_a_private_address(
    server: Loopback, client: httpx.AsyncClient
) -> None:
    dns = FakeDNS({"docs.example.test": ["93.184.216.34", "10.0.0.5"]})
    with pytest.raises(
        FetchRefused, match=r"^refused: docs.example.test resolves to a private .*\(10\.0\.0\.5\)$"
    ):
        await web_fetch(f"http://docs.example.test:{server.port}/", client=client, resolve=dns)


@pytest.mark.parametrize("host", ["localhost", "2130706433", "127.0.0.1", "[::ffff:127.0.0.1]"])
async def test_the_default_policy_refuses_loopback_however_it_is_spelled(
    server: Loopback, client: httpx.AsyncClient, host: str
) -> None:
    with pytest.raises(FetchRefused, match="private or reserved"):
        await web_fetch(f"http://{host}:{server.port}/", client=client)
    assert server.seen == []


@pytest.fixture
async def server6() -> AsyncIterator[Loopback]:
    try:
        running = Loopback(host="::1")
        await running.__aenter__()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    yield running
    await running.__aexit__()


async def test_the_default_policy_refuses_the_ipv6_loopback_literal(
    server6: Loopback, client: httpx.AsyncClient
) -> None:
    with pytest.raises(FetchRefused, match=r"^refused: ::1 is a private or reserved address$"):
        await web_fetch(f"http://[::1]:{server6.port}/", client=client)
    assert server6.seen == []


async def test_it_connects_to_a_checked_ipv6_address_in_brackets(
    server6: Loopback, client: httpx.AsyncClient
) -> None:
    server6.routes["/"] = reply(200, b"<p>over IPv6</p>")
    dns = FakeDNS({"v6.example.test": ["::1"]})
    page = await fetch(f"http://v6.example.test:{server6.port}/", client, resolve=dns, allowed=only("::1"))
    assert page.text == "over IPv6"
    assert server6.seen[0].headers["host"] == f"v6.example.test:{server6.port}"


async def test_it_tries_the_next_checked_address_when_one_does_not_answer(
    server: Loopback, client: httpx.AsyncClient
) -> None:
    server.routes["/"] = reply(200, b"<p>second address</p>")
    dns = FakeDNS({"two.example.test": ["127.0.0.2", "127.0.0.1"]})
    page = await fetch(
        f"http://two.example.test:{server.port}/", client, resolve=dns, allowed=only("127.0.0.1", "127.0.0.2")
    )
    assert page.text == "second address"


def certificate_for(name: str, directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for ``name`` only (no IP address in it): (certificate file, key file)."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


async def test_https_verifies_the_certificate_and_sends_sni_for_the_real_name(tmp_path: Path) -> None:
    cert_file, key_file = certificate_for("docs.example.test", tmp_path)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert_file, key_file)
    sni: list[str | None] = []
    server_tls.sni_callback = lambda sock, name, context: sni.append(name)
    client_tls = ssl.create_default_context(cafile=str(cert_file))
    async with (
        Loopback(tls=server_tls) as server,
        httpx.AsyncClient(verify=client_tls, trust_env=False) as client,
    ):
        server.routes["/"] = reply(200, b"<title>Secure</title>")
        page = await fetch(f"https://docs.example.test:{server.port}/", client)
        assert (page.url, page.title) == (f"https://docs.example.test:{server.port}/", "Secure")
        assert sni == ["docs.example.test"]
        assert server.seen[0].headers["host"] == f"docs.example.test:{server.port}"
        # Same address, another name: the certificate does not cover it, so the fetch must fail.
        with pytest.raises(FetchFailed, match=r"^could not connect to other\.example\.test: ConnectError"):
            await fetch(f"https://other.example.test:{server.port}/", client)
        assert len(server.seen) == 1


MESSY = {
    "gt-inside-an-attribute": (b'<a title="x > y" href="/">link</a>', "", "link"),
    "comments": (b"a<!-- <p>hidden</p> -->b<!-- never closed <p>gone", "", "ab"),
    "lt-inside-a-script": (b'<script>if (a<b) document.write("</div>")</script>ok', "", "ok"),
    "stray-lt": (b"<title>a < b &amp; c</title>1 < 2 and 3 > 2", "a < b & c", "1 < 2 and 3 > 2"),
    "no-body-tag": (b"<head><title>T</title><meta charset=utf-8><p>no body tag</p>", "T", "no body tag"),
    "unclosed-paragraphs": (b"<p>one<p>two<div>three</div></p>", "", "one\n\ntwo\nthree"),
    "unterminated-tags": (b"<p>x</p><a<a<a<a", "", "x\n\n<a<a<a<a"),
}


@pytest.mark.parametrize(("html", "title", "text"), list(MESSY.values()), ids=list(MESSY))
async def test_it_reads_messy_html(
    server: Loopback, client: httpx.AsyncClient, html: bytes, title: str, text: str
) -> None:
    server.routes["/messy"] = reply(200, html)
    page = await fetch(f"http://docs.example.test:{server.port}/messy", client)
    assert (page.title, page.text) == (title, text)


@pytest.mark.parametrize(
    "html",
    [
        pytest.param(b"<a" * 300_000, id="unterminated-tags"),
        pytest.param(b"<!--" * 150_000, id="unterminated-comments"),
        pytest.param(b"</" * 300_000, id="unterminated-end-tags"),
        pytest.param(b"<?" * 300_000, id="unterminated-instructions"),
    ],
)
async def test_a_page_built_to_stall_the_html_parser_is_read_quickly(
    server: Loopback, client: httpx.AsyncClient, html: bytes
) -> None:
    # Python 3.11's HTMLParser alone takes minutes on 600 kB of these: quadratic in the unterminated run.
    server.routes["/stall"] = reply(200, html)
    started = time.monotonic()
    await fetch(f"http://docs.example.test:{server.port}/stall", client, limits=FetchLimits(deadline_s=5))
    assert time.monotonic() - started < 2


async def test_html_that_takes_too_long_to_parse_is_cut_with_a_note(
    server: Loopback, client: httpx.AsyncClient
) -> None:
    server.routes["/tags"] = reply(200, b"<p>start</p>" + b"<i>" * 300_000 + b"<p>end</p>")
    page = await fetch(
        f"http://docs.example.test:{server.port}/tags", client, limits=FetchLimits(parse_budget_s=0)
    )
    assert page.text == "start\n\n[truncated: the page's HTML took too long to read; the rest is left out]"
