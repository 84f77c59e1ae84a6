"""The provider transport over real sockets, with our asyncio network backend and with httpcore's own
(anyio): the same answers and the same httpx errors from both, TLS verified by both."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpcore
import httpx
import pytest

from apps.providers.http import PoolTransport, provider_client
from apps.providers.netstream import HIGH_WATER, AsyncioBackend

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

BACKENDS = [
    pytest.param(AsyncioBackend, id="asyncio"),
    pytest.param(httpcore.AnyIOBackend, id="anyio"),
]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> httpcore.AsyncNetworkBackend:
    backend: httpcore.AsyncNetworkBackend = request.param()
    return backend


@asynccontextmanager
async def _server(handler: Handler, tls: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    handlers: set[asyncio.Task[None]] = set()

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(tracked, "127.0.0.1", 0, ssl=tls)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


async def _read_head(reader: asyncio.StreamReader) -> None:
    await reader.readuntil(b"\r\n\r\n")


def _client(
    backend: httpcore.AsyncNetworkBackend, ssl_context: ssl.SSLContext | None = None
) -> httpx.AsyncClient:
    context = ssl_context or ssl.create_default_context()
    return provider_client(PoolTransport(ssl_context=context, pools=2, network_backend=backend))


def _response(body: bytes, *, close: bool = False) -> bytes:
    connection = b"close" if close else b"keep-alive"
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: %s\r\n\r\n%s" % (
        len(body),
        connection,
        body,
    )


async def test_a_server_that_closes_each_kept_connection_gets_a_new_one_for_the_next_request(
    backend: httpcore.AsyncNetworkBackend,
) -> None:
    connections: list[int] = []

    async def answer_then_hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        await _read_head(reader)
        # Says keep-alive, then closes anyway: the client must notice before reusing the connection.
        writer.write(_response(b"hello"))
        await writer.drain()
        writer.close()

    async with _server(answer_then_hang_up) as port, _client(backend) as client:
        first = await client.get(f"http://127.0.0.1:{port}/")
        await asyncio.sleep(0.05)
        second = await client.get(f"http://127.0.0.1:{port}/")

    assert (first.text, second.text) == ("hello", "hello")
    assert len(connections) == 2


async def test_a_body_far_larger_than_the_read_buffer_arrives_whole_when_read_slowly(
    backend: httpcore.AsyncNetworkBackend,
) -> None:
    body = bytes(range(256)) * (4 * HIGH_WATER // 256)

    async def send_big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.write(_response(body))
        await writer.drain()

    received = bytearray()
    async with (
        asyncio.timeout(10),  # reading that stopped for good would otherwise wait for the test's timeout
        _server(send_big) as port,
        _client(backend) as client,
        client.stream("GET", f"http://127.0.0.1:{port}/") as response,
    ):
        async for block in response.aiter_raw():
            received += block
            await asyncio.sleep(0.001)

    assert received == body


async def test_a_server_that_goes_quiet_ends_in_httpx_read_timeout(
    backend: httpcore.AsyncNetworkBackend,
) -> None:
    async def go_quiet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await asyncio.sleep(5)

    async with (
        _server(go_quiet) as port,
        _client(backend) as client,
        client.stream("GET", f"http://127.0.0.1:{port}/", timeout=httpx.Timeout(0.2)) as response,
    ):
        blocks = response.aiter_raw()
        assert await anext(blocks) == b"first"
        with pytest.raises(httpx.ReadTimeout):
            await anext(blocks)


async def test_a_body_cut_short_ends_in_httpx_remote_protocol_error(
    backend: httpcore.AsyncNetworkBackend,
) -> None:
    async def cut_short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
        await writer.drain()
        writer.close()

    async with _server(cut_short) as port, _client(backend) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(f"http://127.0.0.1:{port}/")


async def test_a_port_nobody_listens_on_ends_in_httpx_connect_error(
    backend: httpcore.AsyncNetworkBackend,
) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    async with _client(backend) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/")


# --- TLS ---------------------------------------------------------------------------------------------------


def _certificates(directory: Path) -> tuple[bytes, Path, Path]:
    """A throwaway certificate authority and a server certificate for 127.0.0.1 that it signed."""
    # cryptography comes with Daphne (through autobahn), not as a dependency of its own.
    pytest.importorskip("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def certificate(
        subject: str, key: ec.EllipticCurvePrivateKey, issuer: str, signer: ec.EllipticCurvePrivateKey
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        certificate("test authority", ca_key, "test authority", ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        certificate("127.0.0.1", server_key, "test authority", ca_key)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file = directory / "server.pem", directory / "server.key"
    cert_file.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca.public_bytes(serialization.Encoding.PEM), cert_file, key_file


async def test_tls_is_verified_a_trusted_server_is_read_and_an_unknown_one_refused(
    backend: httpcore.AsyncNetworkBackend, tmp_path: Path
) -> None:
    ca_pem, cert_file, key_file = _certificates(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert_file, key_file)

    async def hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await _read_head(reader)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            return  # the refusing client hung up during the handshake
        writer.write(_response(b"over tls", close=True))
        await writer.drain()
        writer.close()

    trusting = ssl.create_default_context(cadata=ca_pem.decode())
    async with _server(hello, tls=server_tls) as port:
        async with _client(backend, trusting) as client:
            assert (await client.get(f"https://127.0.0.1:{port}/")).text == "over tls"
        async with _client(backend, ssl.create_default_context()) as client:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await client.get(f"https://127.0.0.1:{port}/")
