"""A real nginx in front of Axeom, started in the foreground and reaped by the test."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests._redis import free_port

# Seconds nginx may take to listen (it starts in well under one; the machine may be loaded).
START_TIMEOUT = 15.0

_CONFIG = """\
daemon off;
master_process off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
{servers}}}
"""

# One proxy: what the README tells users to write, plus the address nginx
# connects from (``source``), so that each proxy has an address of its own.
_SERVER = """\
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_bind {source};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_read_timeout 60s;
        }}
    }}
"""


@contextmanager
def running_nginx(directory: Path, upstream: int, sources: list[str]) -> Iterator[list[int]]:
    """nginx proxying to ``127.0.0.1:upstream``, one listening port per
    address in ``sources`` (the address it connects to Axeom from); yields
    the ports. Its pid file, logs and temporary files stay in ``directory``."""
    binary = shutil.which("nginx")
    assert binary, "nginx is missing: scripts/test installs it"
    ports = [free_port() for _ in sources]
    servers = "".join(
        _SERVER.format(port=port, upstream=upstream, source=source)
        for port, source in zip(ports, sources, strict=True)
    )
    config = directory / "nginx.conf"
    config.write_text(_CONFIG.format(dir=directory, servers=servers))
    proc = subprocess.Popen(
        [binary, "-p", str(directory), "-c", str(config), "-e", str(directory / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_listening(proc, ports, directory)
        yield ports
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_listening(proc: subprocess.Popen[bytes], ports: list[int], directory: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    for port in ports:
        while True:
            if proc.poll() is not None:
                log = (directory / "error.log").read_text(errors="replace")
                raise AssertionError(f"nginx exited with {proc.returncode}:\n{log}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"nginx did not listen on {port}") from None
                time.sleep(0.05)
