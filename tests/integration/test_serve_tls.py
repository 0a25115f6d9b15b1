"""`inhouse serve` with server.tls_certfile / tls_keyfile: HTTPS that the official `openai` client talks to with the
certificate as its trust anchor, nothing in plain HTTP on that port, and a half or mismatched pair refused in one
line before the model loads."""

from __future__ import annotations

import os
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import openai
import pytest

from inhouse.testing.crash import inhouse_argv
from inhouse.testing.server_process import create_admin_key, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
SMOL = "smollm2-135m"


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"], check=True, capture_output=True)
    return cert, key


def serve_env(data: Path, cert: Path | None, key: Path | None) -> dict[str, str]:
    env = {**os.environ, "INHOUSE_DATA_DIR": str(data), "COLUMNS": "300"}
    if cert is not None:
        env["INHOUSE_SERVER__TLS_CERTFILE"] = str(cert)
    if key is not None:
        env["INHOUSE_SERVER__TLS_KEYFILE"] = str(key)
    return env


def test_https_serves_the_openai_client_and_refuses_plain_http(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path, "server")
    data = tmp_path / "data"
    data.mkdir()
    admin = create_admin_key(data)
    port = free_port()
    proc = subprocess.Popen(inhouse_argv("serve", "--model", SMOL, "--port", str(port), "--log-level", "warning"),
                            env=serve_env(data, cert, key), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    trust = ssl.create_default_context(cafile=str(cert))
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "inhouse serve did not come up"
            try:
                if httpx.get(f"https://127.0.0.1:{port}/ready", verify=trust, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        client = openai.OpenAI(base_url=f"https://127.0.0.1:{port}/v1", api_key=admin,
                               http_client=httpx.Client(verify=trust))
        reply = client.chat.completions.create(model=SMOL, max_tokens=8,
                                               messages=[{"role": "user", "content": "Say hello."}])
        assert reply.choices[0].message.content
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)  # no plain HTTP on a TLS port
        with pytest.raises(httpx.ConnectError):  # and a client that does not trust the certificate refuses it
            httpx.get(f"https://127.0.0.1:{port}/health", timeout=5)
    finally:
        proc.terminate()
        out = proc.communicate(timeout=60)[0].decode(errors="replace")
    assert f"https://127.0.0.1:{port}/v1" in out.replace("\n", "")


@pytest.mark.parametrize("pair", ["half", "mismatched", "missing"])
def test_a_bad_pair_is_one_line_before_anything_loads(tmp_path: Path, pair: str) -> None:
    cert, key = self_signed(tmp_path, "a")
    _, other_key = self_signed(tmp_path, "b")
    files = {"half": (cert, None), "mismatched": (cert, other_key), "missing": (tmp_path / "no.pem", key)}[pair]
    t = time.monotonic()
    done = subprocess.run(inhouse_argv("serve", "--model", SMOL, "--port", str(free_port())),
                          env=serve_env(tmp_path / "data", *files), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "tls" in done.stderr.lower() and time.monotonic() - t < 30, done.stderr
