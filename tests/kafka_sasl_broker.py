"""A test-only Kafka broker with SASL (SCRAM-SHA-256/512, OAUTHBEARER), started by the test itself.

It is `scripts/kafka-up.sh` again with its own state directory, ports and properties
(`kafka-local/sasl-server.properties`): the jars are the shared broker's (`.kafka/lib`), the
data, logs and pid are the test's, and the shared broker on 9092 is never touched. The SCRAM
users are created when its storage is formatted (`--add-scram`). Stopped by its own pid.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SaslBroker:
    state: Path
    sasl_bootstrap: str
    plain_bootstrap: str
    pid: int

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


def start(state: Path, user: str, password: str) -> SaslBroker:
    """Format a fresh cluster in `state` with `user`/`password` as a SCRAM-SHA-256 and -512 user; start it."""
    port, controller, sasl = free_port(), free_port(), free_port()
    scram = f"[name={user},password={password}]"
    env = {
        **os.environ,
        "KAFKA_STATE_DIR": str(state),
        "KAFKA_PROPERTIES_TEMPLATE": str(ROOT / "kafka-local" / "sasl-server.properties"),
        "KAFKA_PORT": str(port),
        "KAFKA_CONTROLLER_PORT": str(controller),
        "KAFKA_SASL_PORT": str(sasl),
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
    return SaslBroker(state, f"127.0.0.1:{sasl}", f"127.0.0.1:{port}", int(pid_file.read_text()))
