"""A production-like server: TLS, tokens, an origin list, limits; real speech over wss://."""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from captioncast_client.access import Access
from captioncast_client.audio_files import decode_pcm, rechunk, silence
from captioncast_client.streaming import ServerRefused, ServerUnreachable, stream, stream_url
from captioncast_client.transcription import transcribe_file
from tests.conftest import reference, speech_path, wer
from tests.integration import rawws
from tests.integration.rawws import open_raw
from tests.integration.tls import Certificate, SecureServer, self_signed, start_secure_server

pytestmark = pytest.mark.model

TOKEN = "s3cret-token-for-tests"
FILE_TOKEN = "second-token-from-a-file"
ORIGIN = "https://studio.example"
PER_IP = 4
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SEND_TIMEOUT_S = 2.0
PING_INTERVAL_S = 10.0


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def secure(certificate: Certificate, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[SecureServer]:
    tokens = tmp_path_factory.mktemp("tokens") / "tokens.txt"
    tokens.write_text(f"# one token per line\n\n{FILE_TOKEN}\n")
    server = start_secure_server(
        "--token", TOKEN, "--token-file", str(tokens), "--allowed-origin", ORIGIN,
        "--max-connections-per-ip", str(PER_IP), "--send-timeout-s", str(SEND_TIMEOUT_S),
        "--ping-interval-s", str(PING_INTERVAL_S), certificate=certificate)
    yield server
    server.stop()


def _audio(name: str) -> list[bytes]:
    return [*rechunk(decode_pcm(str(speech_path(name))), 3200), silence(1.0)]


def _bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _open(server: SecureServer, path: str, **kwargs: Any) -> ClientConnection:
    assert server.certificate is not None
    return await connect(server.url + path, ssl=server.certificate.client_context(),
                         **kwargs)


async def _until_logged(server: SecureServer, text: str, deadline_s: float = 30) -> None:
    """Until the server's log holds `text` (written line by line, as things happen)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    while text not in server.log.read_text():
        assert loop.time() < deadline, f"the server never logged {text!r}"
        await asyncio.sleep(0.05)


async def _refusal(ws: ClientConnection) -> tuple[dict[str, Any], int | None]:
    event = json.loads(await asyncio.wait_for(ws.recv(), 10))
    await asyncio.wait_for(ws.wait_closed(), 10)
    return event, ws.close_code


async def test_real_speech_over_wss_with_a_token(secure: SecureServer) -> None:
    assert secure.certificate is not None
    access = Access(token=TOKEN, cafile=str(secure.certificate.certfile))
    name = "libri_dev_2412-153948-0000"
    result = await stream(stream_url(secure.url), _audio(name), realtime=False, access=access)
    assert result.events[-1]["type"] == "end" and not result.errors
    assert wer(reference(name), result.text) <= 0.15
    # the token from the file works as well, here as a query parameter
    file_token = await stream(stream_url(secure.url, token=FILE_TOKEN), _audio("whisper_jfk"),
                              realtime=False, access=Access(cafile=access.cafile))
    assert "country" in file_token.text


async def test_a_post_over_https_with_a_token(secure: SecureServer) -> None:
    assert secure.certificate is not None
    access = Access(token=TOKEN, cafile=str(secure.certificate.certfile))
    transcript = await asyncio.to_thread(transcribe_file, secure.url,
                                         speech_path("whisper_jfk"), access=access)
    assert "ask not" in transcript["text"].lower()
    with pytest.raises(ServerRefused, match=r"401.*--token"):
        await asyncio.to_thread(transcribe_file, secure.url, speech_path("whisper_jfk"),
                                access=Access(cafile=access.cafile))


async def test_plain_ws_and_http_to_the_tls_port_fail_cleanly(secure: SecureServer) -> None:
    plain = f"ws://127.0.0.1:{secure.port}"
    with pytest.raises(ServerUnreachable, match="wss://"):
        await stream(stream_url(plain), [silence(0.1)], open_timeout=5,
                     access=Access(token=TOKEN))
    connection = http.client.HTTPConnection("127.0.0.1", secure.port, timeout=5)
    with pytest.raises((OSError, http.client.HTTPException)):
        connection.request("GET", "/healthz")
        connection.getresponse().read()
    connection.close()
    # and a client that does not trust the certificate is told what to do
    with pytest.raises(ServerUnreachable, match="--cafile"):
        await stream(stream_url(secure.url), [silence(0.1)], access=Access(token=TOKEN))
    assert secure.health()[0] == 200


async def test_websockets_without_a_valid_token_get_unauthorized_and_4001(
        secure: SecureServer) -> None:
    for path, headers in [("/v1/stream", {}), ("/v1/stream?token=wrong-guess-123", {}),
                          ("/v1/stream", _bearer("wrong-guess-123")),
                          ("/v1/captions?channel=x", {}),
                          ("/v1/captions?channel=x", {"Authorization": "Basic czNjcmV0"})]:
        ws = await _open(secure, path, additional_headers=headers)
        event, code = await _refusal(ws)
        assert event["type"] == "error" and event["code"] == "unauthorized", path
        assert event["seq"] == 1 and "token" in event["message"]
        assert code == 4001, path
    # with the token, the viewer route opens: the server counts the viewer...
    ws = await _open(secure, "/v1/captions?channel=tokened", additional_headers=_bearer())
    await _until_logged(secure, "event=viewer_join channel=tokened ")
    # ...and has nothing to say to it: no error, no close
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(ws.recv(), 0.5)
    await ws.close()


async def test_http_routes_want_the_token_but_healthz_stays_open(
        secure: SecureServer) -> None:
    status, _, body = await asyncio.to_thread(secure.get, "/healthz")
    assert status == 200 and json.loads(body) == {"status": "ok"}  # nothing more
    status, _, body = await asyncio.to_thread(secure.get, "/healthz", _bearer())
    assert status == 200 and json.loads(body)["model"] == "tiny.en"  # with a token: all
    for path in ("/v1/channels", "/v1/channels/x/captions.vtt", "/overlay?channel=x",
                 "/metrics", "/no/such/route"):
        status, headers, body = await asyncio.to_thread(secure.get, path)
        assert status == 401, path
        assert headers["WWW-Authenticate"].startswith("Bearer")
        assert json.loads(body)["error"] == "unauthorized"
    status, _, body = await asyncio.to_thread(secure.get, "/v1/channels", _bearer())
    assert status == 200 and "channels" in json.loads(body)
    status, headers, body = await asyncio.to_thread(secure.get,
                                                    f"/overlay?channel=x&token={TOKEN}")
    assert status == 200 and b"params.set(\"token\"" in body  # the page passes it on
    assert headers["Referrer-Policy"] == "no-referrer"  # and never leaks its URL
    for path in ("/v1/transcribe", "/v1/audio/transcriptions"):
        status, headers, body = await asyncio.to_thread(secure.get, path, method="POST")
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer"), path


async def test_browsers_from_other_origins_get_403(secure: SecureServer) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await _open(secure, f"/v1/captions?channel=x&token={TOKEN}",
                    origin="https://evil.example")  # type: ignore[arg-type]
    assert refused.value.response.status_code == 403
    for origin in (ORIGIN, f"https://127.0.0.1:{secure.port}"):  # listed, and same-origin
        ws = await _open(secure, f"/v1/captions?channel=x&token={TOKEN}",
                         origin=origin)  # type: ignore[arg-type]
        await ws.close()
    status, _, _ = await asyncio.to_thread(
        secure.get, "/v1/transcribe", {**_bearer(), "Origin": "https://evil.example"}, "POST")
    assert status == 403


async def test_connections_per_address_are_limited(secure: SecureServer) -> None:
    viewers = [await _open(secure, "/v1/captions?channel=limits", additional_headers=_bearer())
               for _ in range(PER_IP)]
    # every one of them is counted (its handler runs after the handshake we saw)
    await _until_logged(secure, f"event=viewer_join channel=limits since=None viewers={PER_IP}")
    one_more = await _open(secure, "/v1/captions?channel=limits", additional_headers=_bearer())
    event, code = await _refusal(one_more)
    assert event["code"] == "overloaded" and "per address" in event["message"]
    assert code == 1013
    status, headers, body = await asyncio.to_thread(secure.get, "/v1/transcribe", _bearer(),
                                                    "POST")
    assert status == 429 and json.loads(body)["error"] == "overloaded"
    assert "Retry-After" in headers
    for ws in viewers:
        await ws.close()
    # once the server has let go of them (it may still be closing when our close returns),
    # the address may connect again: refused at first perhaps, then a viewer again
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        again = await _open(secure, "/v1/captions?channel=limits-again",
                            additional_headers=_bearer())
        try:
            event = json.loads(await asyncio.wait_for(again.recv(), 0.2))
        except TimeoutError:  # no refusal yet: the server says whether it took the viewer
            await _until_logged(secure, "event=viewer_join channel=limits-again ")
            await again.close()
            break
        await again.close()
        assert event["code"] == "overloaded" and loop.time() < deadline, event
        await asyncio.sleep(0.05)


def _never_read(server: SecureServer) -> tuple[float, str]:
    """Flood odd-sized frames, each worth a bad_audio event, and read none of them;
    return how long until the server cut the connection, and our address as it saw it."""
    assert server.certificate is not None
    sock, head = open_raw(server.port, f"/v1/stream?token={TOKEN}",
                          server.certificate.client_context(), timeout=60)
    assert b" 101 " in head.split(b"\r\n")[0]
    host, port = sock.getsockname()[:2]
    batch = rawws.binary(b"\x01") * 200
    started = time.monotonic()
    try:
        while time.monotonic() - started < 120:
            sock.sendall(batch)
    except OSError:  # reset once the server gives up on us
        return time.monotonic() - started, f"{host}:{port}"
    finally:
        sock.close()
    raise AssertionError("the server kept a client that reads nothing for two minutes")


async def test_a_client_that_never_reads_is_dropped_and_others_go_on(
        secure: SecureServer) -> None:
    assert secure.certificate is not None
    access = Access(token=TOKEN, cafile=str(secure.certificate.certfile))
    speaker = asyncio.create_task(stream(stream_url(secure.url), _audio("whisper_jfk"),
                                         realtime=True, access=access))
    dropped_after, peer = await asyncio.to_thread(_never_read, secure)
    result = await speaker
    assert not result.errors and "country" in result.text
    # its sends blocked for the send timeout before the server gave up: not sooner
    assert dropped_after >= SEND_TIMEOUT_S
    # and it was the send timeout, not the ping timeout (10 s, then 10 s more), that let it
    # go: the server says why it dropped this very session (a session with audio would
    # wait for a resume)
    started = re.search(rf"event=session_start session=(\S+) peer={re.escape(peer)} ",
                        secure.log.read_text())
    assert started, peer
    why = re.compile(rf"event=session_(end|detached) session={re.escape(started.group(1))} "
                     r".*reason=(\S+)")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30  # the line follows the cut: wait for it, not for long
    while not (ended := why.search(secure.log.read_text())) and loop.time() < deadline:
        await asyncio.sleep(0.05)
    assert ended and ended.group(2) == "send_timeout", ended
    print(f"a client that reads nothing was dropped after {dropped_after:.1f} s")


def test_a_half_open_connection_is_closed_by_the_ping_timeout(secure: SecureServer) -> None:
    """The peer vanishes without a FIN: it answers no ping, and the server lets go."""
    assert secure.certificate is not None
    raw, head = open_raw(secure.port, f"/v1/captions?channel=gone&token={TOKEN}",
                         secure.certificate.client_context(), timeout=60)
    assert head.startswith(b"HTTP/1.1 101")
    started = time.monotonic()
    received = b""
    while chunk := raw.recv(4096):  # pings, never answered, then the close
        received += chunk
    elapsed = time.monotonic() - started
    raw.close()
    frames = _frames(received)
    assert 0x9 in [opcode for opcode, _ in frames]  # a ping came, and went unanswered...
    closes = [payload for opcode, payload in frames if opcode == 0x8]
    # ...so the server closed, saying why: the ping timeout (1011), not some other limit
    assert closes and rawws.close_code(closes[0]) == 1011, frames
    assert b"keepalive ping timeout" in closes[0], closes
    # not before a ping was due and its answer overdue
    assert elapsed >= 2 * PING_INTERVAL_S - 1, elapsed
    print(f"a peer that answers no ping was dropped after {elapsed:.1f} s")


def _frames(data: bytes) -> list[tuple[int, bytes]]:
    """The server's frames (unmasked) in what it sent: (opcode, payload)."""
    frames = []
    while len(data) >= 2:
        length, offset = data[1] & 0x7F, 2
        if length == 126:
            length, offset = int.from_bytes(data[2:4], "big"), 4
        elif length == 127:
            length, offset = int.from_bytes(data[2:10], "big"), 10
        frames.append((data[0] & 0x0F, data[offset : offset + length]))
        data = data[offset + length :]
    return frames


def test_a_silent_peer_on_the_tls_port_is_dropped(secure: SecureServer) -> None:
    """No TLS hello at all: cut after the same 10 s a silent plain connection gets."""
    from captioncast.transport.sniff import SNIFF_TIMEOUT_S

    # asyncio's own TLS handshake timeout is 60 s: a read that gives up at 40 s tells the
    # two apart on any machine; and the server cannot have cut us before its 10 s
    with socket.create_connection(("127.0.0.1", secure.port), timeout=40) as silent:
        started = time.monotonic()
        assert silent.recv(1) == b""
        assert time.monotonic() - started >= SNIFF_TIMEOUT_S - 0.5


def test_the_docker_healthcheck_probes_a_tls_server_without_a_token(
        secure: SecureServer) -> None:
    dockerfile = (Path(__file__).resolve().parents[2] / "Dockerfile").read_text()
    command = json.loads(dockerfile.split("HEALTHCHECK", 1)[1].split("CMD", 1)[1]
                         .split("\n", 1)[0])
    assert secure.certificate is not None
    env = {"CAPTIONCAST_PORT": str(secure.port),
           "CAPTIONCAST_CERTFILE": str(secure.certificate.certfile), "PATH": "/usr/bin"}
    probe = subprocess.run([sys.executable, *command[1:]], env=env, timeout=30,
                           capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium")
async def test_the_overlay_over_https_passes_its_token_to_its_websocket(
        secure: SecureServer) -> None:
    from playwright.async_api import async_playwright

    assert secure.certificate is not None
    access = Access(token=TOKEN, cafile=str(secure.certificate.certfile))
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            # the test's certificate is not in Chromium's store; bypass_csp: Playwright's
            # string predicates need eval, which the page forbids
            context = await browser.new_context(ignore_https_errors=True, bypass_csp=True)
            page = await context.new_page()
            await page.goto(f"{secure.http}/overlay?channel=tls-show&token={TOKEN}")
            await page.wait_for_function("document.body.dataset.state === 'open'",
                                         timeout=60_000)
            await stream(stream_url(secure.url, channel="tls-show"), _audio("whisper_jfk"),
                         realtime=False, access=access)
            await page.wait_for_function(
                "document.querySelector('#box').textContent.toLowerCase()"
                ".includes('your country')", timeout=60_000)  # deadlines, not waits
        finally:
            await browser.close()


def test_clients_take_the_token_and_the_ca_from_flags_or_the_environment(
        secure: SecureServer) -> None:
    assert secure.certificate is not None
    wav = str(speech_path("whisper_jfk"))
    cafile = str(secure.certificate.certfile)

    def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        import os
        return subprocess.run([sys.executable, "-m", "captioncast.cli", *args],
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, **(env or {})})

    ok = cli("stream", wav, "--fast", "--server", secure.url, "--token", TOKEN,
             "--cafile", cafile)
    assert ok.returncode == 0 and "country" in ok.stdout
    by_env = cli("transcribe", wav, "--server", secure.url.replace("wss", "https"),
                 "--no-progress", env={"CAPTIONCAST_TOKEN": TOKEN, "CAPTIONCAST_CAFILE": cafile})
    assert by_env.returncode == 0 and "country" in by_env.stdout
    no_token = cli("stream", wav, "--fast", "--server", secure.url, "--cafile", cafile)
    assert no_token.returncode == 3 and "--token" in no_token.stderr
    no_ca = cli("watch", "x", "--server", secure.url, "--token", TOKEN)
    assert no_ca.returncode == 2 and "--cafile" in no_ca.stderr
    watch_no_token = cli("watch", "x", "--server", secure.url, "--cafile", cafile)
    assert watch_no_token.returncode == 3 and "unauthorized" in watch_no_token.stderr


def test_tokens_never_reach_the_log(secure: SecureServer) -> None:
    log = secure.log.read_text()
    assert "event=session_refused" in log  # the refusals above were logged...
    assert TOKEN not in log and FILE_TOKEN not in log  # ...without the tokens
    assert "wrong-guess-123" not in log


def test_a_bad_certificate_or_token_file_stops_the_server_with_a_message(
        tmp_path: Path) -> None:
    missing = subprocess.run(
        [sys.executable, "-m", "captioncast.cli", "serve", "--port", "0",
         "--token-file", str(tmp_path / "none.txt")],
        capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "token file" in missing.stderr
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    junk = subprocess.run(
        [sys.executable, "-m", "captioncast.cli", "serve", "--port", "0",
         "--certfile", str(tmp_path / "junk.pem")],
        capture_output=True, text=True, timeout=60)
    assert junk.returncode == 1 and "certificate" in junk.stderr
