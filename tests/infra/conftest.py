"""Fixtures of the infra tests: an S3 endpoint for tansu's durable storage."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from infra.broker import free_port, port_open


@pytest.fixture
def s3_endpoint() -> Iterator[str]:
    """``http://host:port`` of an S3 server with a ``tansu`` bucket.

    ``PGENRM_TEST_S3_ENDPOINT`` names a running one; otherwise ``moto_server``
    (``PGENRM_TEST_MOTO_SERVER`` or on PATH) is started. Skips when neither exists.
    """
    import httpx

    endpoint = os.environ.get("PGENRM_TEST_S3_ENDPOINT")
    proc: subprocess.Popen[bytes] | None = None
    if not endpoint:
        exe = os.environ.get("PGENRM_TEST_MOTO_SERVER") or shutil.which("moto_server")
        if not exe:
            pytest.skip("no S3 server: set PGENRM_TEST_S3_ENDPOINT or install moto[server]")
        port = free_port()
        proc = subprocess.Popen(
            [exe, "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        endpoint = f"http://127.0.0.1:{port}"
        end = time.monotonic() + 30
        while not port_open("127.0.0.1", port) and time.monotonic() < end:
            if proc.poll() is not None:
                break  # e.g. a pyenv shim without moto behind it
            time.sleep(0.1)
        if not port_open("127.0.0.1", port):
            proc.kill()
            proc.wait(timeout=10)
            pytest.skip(f"{exe} did not start an S3 server")
    try:
        httpx.put(f"{endpoint}/tansu", timeout=10)  # create the bucket (idempotent enough)
        yield endpoint
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
