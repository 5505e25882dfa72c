"""A test-only Kafka broker with SASL (SCRAM-SHA-256/512, OAUTHBEARER) and mutual TLS, started by the test itself.

It is `scripts/kafka-up.sh` again with its own state directory, ports and properties
(`kafka-local/sasl-server.properties`): the jars are the shared broker's (`.kafka/lib`), the
data, logs and pid are the test's, and the shared broker on 9092 is never touched. The SCRAM
users are created when its storage is formatted (`--add-scram`); its TLS listener's CA and
certificate are made here (`write_pki`). Stopped by its own pid.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Pki:
    ca: Path
    client_cert: Path
    client_key: Path  # encrypted with the passphrase given to write_pki


def write_pki(folder: Path, passphrase: str) -> Pki:
    """A CA; the broker's certificate for 127.0.0.1 with its key in one PEM (`broker.pem`, as Kafka's
    PEM keystore wants it); a client certificate whose key is encrypted with `passphrase`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    def cert(subject: str, key: Any, signer: Any, ca: bool) -> x509.Certificate:
        builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jwtriage test CA")]))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=2))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if subject == "127.0.0.1":
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return builder.sign(signer, hashes.SHA256())

    pem = serialization.Encoding.PEM
    pkcs8 = serialization.PrivateFormat.PKCS8
    ca_key, broker_key, client_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    (folder / "ca.pem").write_bytes(cert("jwtriage test CA", ca_key, ca_key, True).public_bytes(pem))
    (folder / "broker.pem").write_bytes(
        broker_key.private_bytes(pem, pkcs8, serialization.NoEncryption())
        + cert("127.0.0.1", broker_key, ca_key, False).public_bytes(pem))
    (folder / "client.pem").write_bytes(cert("jwtriage", client_key, ca_key, False).public_bytes(pem))
    (folder / "client.key").write_bytes(
        client_key.private_bytes(pem, pkcs8, serialization.BestAvailableEncryption(passphrase.encode())))
    return Pki(folder / "ca.pem", folder / "client.pem", folder / "client.key")


@dataclass
class SaslBroker:
    state: Path
    sasl_bootstrap: str
    plain_bootstrap: str
    pid: int
    ssl_bootstrap: str = ""
    pki: Pki | None = None

    def stop(self) -> None:
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
        os.kill(self.pid, signal.SIGKILL)


def start(state: Path, user: str, password: str, key_passphrase: str) -> SaslBroker:
    """Format a fresh cluster in `state` with `user`/`password` as a SCRAM-SHA-256 and -512 user, write
    its PKI (the client key under `key_passphrase`), start it."""
    port, controller, sasl, tls = free_port(), free_port(), free_port(), free_port()
    pki = write_pki(state / "tls", key_passphrase)
    scram = f"[name={user},password={password}]"
    env = {
        **os.environ,
        "KAFKA_STATE_DIR": str(state),
        "KAFKA_PROPERTIES_TEMPLATE": str(ROOT / "kafka-local" / "sasl-server.properties"),
        "KAFKA_PORT": str(port),
        "KAFKA_CONTROLLER_PORT": str(controller),
        "KAFKA_SASL_PORT": str(sasl),
        "KAFKA_SSL_PORT": str(tls),
        "KAFKA_FORMAT_ARGS": f"--add-scram SCRAM-SHA-256={scram} --add-scram SCRAM-SHA-512={scram}",
        "KAFKA_HEAP_OPTS": "-Xms128m -Xmx256m",
    }
    result = subprocess.run(["bash", str(ROOT / "scripts" / "kafka-up.sh")], env=env, capture_output=True, text=True,
                            timeout=400, check=False)
    pid_file = state / "kafka.pid"
    if result.returncode != 0:
        if pid_file.exists():
            SaslBroker(state, "", "", int(pid_file.read_text())).stop()
        raise RuntimeError(f"the SASL test broker did not start:\n{result.stdout}\n{result.stderr}")
    return SaslBroker(state, f"127.0.0.1:{sasl}", f"127.0.0.1:{port}", int(pid_file.read_text()),
                      f"127.0.0.1:{tls}", pki)
