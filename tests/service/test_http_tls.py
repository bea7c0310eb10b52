"""HTTP tasks over TLS, against real HTTPS servers the test starts on 127.0.0.1 with
certificates it makes (a CA of its own, given to the server through SSL_CERT_FILE, which
OpenSSL's default verify paths read).

The request goes to the address the outbound rules checked, not to the name: these tests show
that the certificate is still verified against the name (``localhost``), that the name goes out
as the TLS server name (SNI) and as Host, and that a certificate for another name or from an
unknown issuer fails the task with States.Http.TLS."""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.service.server import Server, running_server
from tests.service.test_api_aws import ROLE, _client, unique, wait_status

HTTP = "arn:aws:states:::http:invoke"


@dataclass
class Issued:
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    def write(self, folder: Path, name: str) -> tuple[Path, Path]:
        chain = folder / f"{name}.pem"
        key = folder / f"{name}.key"
        chain.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))
        key.write_bytes(
            self.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return chain, key


def _issue(common_name: str, names: list[str], issuer: Issued | None) -> Issued:
    """A certificate for ``names`` signed by ``issuer`` (a CA of its own when None)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        builder = builder.add_extension(
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
            True,
        )
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False
        )
    else:
        alternatives: list[x509.GeneralName] = []
        for name in names:
            try:
                alternatives.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alternatives.append(x509.DNSName(name))
        builder = builder.add_extension(x509.SubjectAlternativeName(alternatives), False)
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), False
        )
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False
        )
    signer = issuer.key if issuer else key
    return Issued(key, builder.sign(signer, hashes.SHA256()))


@dataclass
class Https:
    """An HTTPS server on 127.0.0.1 answering JSON; what it saw: SNI names and Host headers."""

    port: int
    server_names: list[str | None] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    requests: int = 0


def _serve(folder: Path, name: str, issued: Issued) -> tuple[Https, ThreadingHTTPServer]:
    chain, key = issued.write(folder, name)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain, key)
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    seen = Https(server.server_address[1])

    def on_hello(sock: Any, server_name: str | None, ctx: Any) -> None:
        seen.server_names.append(server_name)

    context.sni_callback = on_hello

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            seen.requests += 1
            seen.hosts.append(self.headers.get("Host", ""))
            body = json.dumps({"secure": True}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server.RequestHandlerClass = Handler
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return seen, server


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("tls")
    authority = _issue("Statewright test CA", [], None)
    ca_file, _ = authority.write(folder, "ca")
    servers = {
        "good": _serve(folder, "good", _issue("localhost", ["localhost"], authority)),
        "other-name": _serve(
            folder, "other", _issue("elsewhere.test", ["elsewhere.test"], authority)
        ),
        "unknown-issuer": _serve(
            folder, "stranger", _issue("localhost", ["localhost"], _issue("Stranger CA", [], None))
        ),
    }
    yield {"ca": ca_file, "folder": folder, **{k: v[0] for k, v in servers.items()}}
    for _, server in servers.values():
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def tls_server(pki: dict[str, Any]) -> Iterator[Server]:
    folder: Path = pki["folder"]
    with running_server(
        f"sqlite:///{folder / 'statewright.db'}",
        folder / "server.log",
        backend="sqlite",
        # The test CA is the only one trusted; localhost resolves to 127.0.0.1, which is allowed.
        env={"SSL_CERT_FILE": str(pki["ca"]), "STATEWRIGHT_HTTP_ALLOW": "127.0.0.1,::1"},
    ) as server:
        yield server


def _call(server: Server, url: str, wanted: str) -> dict[str, Any]:
    aws = _client(server.base_url, server.key_id, server.secret)
    definition = {
        "StartAt": "Call",
        "States": {
            "Call": {
                "Type": "Task",
                "Resource": HTTP,
                "Parameters": {"ApiEndpoint": url, "Method": "GET"},
                "End": True,
            }
        },
    }
    arn = aws.create_state_machine(
        name=unique("tls"), definition=json.dumps(definition), roleArn=ROLE
    )["stateMachineArn"]
    execution = aws.start_execution(stateMachineArn=arn, input="{}")["executionArn"]
    described: dict[str, Any] = wait_status(server, aws, execution, wanted)
    return described


def test_a_certificate_for_the_name_is_verified_against_the_name_not_the_address(
    tls_server: Server, pki: dict[str, Any]
) -> None:
    good: Https = pki["good"]
    done = _call(tls_server, f"https://localhost:{good.port}/ok?x=1", "SUCCEEDED")
    output = json.loads(done["output"])
    assert output["ResponseBody"] == {"secure": True}
    assert output["StatusCode"] == 200
    # The name went out as the TLS server name and in Host, though the socket went to the
    # address that was checked.
    assert "localhost" in good.server_names
    assert good.hosts[-1] == f"localhost:{good.port}"


@pytest.mark.parametrize("server", ["other-name", "unknown-issuer"])
def test_a_certificate_that_does_not_verify_fails_the_task_with_States_Http_TLS(
    tls_server: Server, pki: dict[str, Any], server: str
) -> None:
    https: Https = pki[server]
    done = _call(tls_server, f"https://localhost:{https.port}/ok", "FAILED")
    assert done["error"] == "States.Http.TLS", done
    assert "certificate" in done["cause"].lower(), done["cause"]
    assert https.requests == 0  # nothing was sent over a connection that did not verify
