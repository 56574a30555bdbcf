"""A self-signed certificate for 127.0.0.1, and a real server started with it."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.integration.conftest import (
    ARTIFACTS,
    admission_off,
    free_port,
    store_off,
    wait_healthy,
)


@dataclass(frozen=True)
class Certificate:
    certfile: Path
    keyfile: Path

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.certfile))


def self_signed(directory: Path) -> Certificate:
    """A certificate valid for 127.0.0.1 and localhost that is its own CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "captioncast test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    certfile.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return Certificate(certfile, keyfile)


@dataclass
class SecureServer:
    """A server subprocess that may speak TLS and want a token."""

    port: int
    process: subprocess.Popen[bytes]
    log: Path
    certificate: Certificate | None = None

    @property
    def url(self) -> str:
        return f"{'wss' if self.certificate else 'ws'}://127.0.0.1:{self.port}"

    @property
    def http(self) -> str:
        return f"{'https' if self.certificate else 'http'}://127.0.0.1:{self.port}"

    def get(self, path: str, headers: dict[str, str] | None = None,
            method: str = "GET") -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(self.http + path, headers=headers or {},
                                         method=method)
        context = self.certificate.client_context() if self.certificate else None
        try:
            with urllib.request.urlopen(request, timeout=10, context=context) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def health(self) -> tuple[int, dict[str, object]]:
        status, _, body = self.get("/healthz")
        return status, json.loads(body)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_secure_server(*args: str, certificate: Certificate | None = None,
                        name: str = "secure", env: dict[str, str] | None = None
                        ) -> SecureServer:
    ARTIFACTS.mkdir(exist_ok=True)
    port = free_port()
    log = ARTIFACTS / f"{name}-{port}.log"
    tls = ["--certfile", str(certificate.certfile), "--keyfile", str(certificate.keyfile)] \
        if certificate else []
    process = subprocess.Popen(
        [sys.executable, "-m", "captioncast.cli", "serve", "--port", str(port), *tls,
         *store_off(admission_off(args))],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
    )
    server = SecureServer(port, process, log, certificate)
    wait_healthy(process, lambda: server.health()[0], log)
    return server
