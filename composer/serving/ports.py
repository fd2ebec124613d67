"""A free loopback port for a server started a moment later (tests, benches).

Contract: `free_port(host)` returns a TCP port that was free on `host` when checked, chosen at
random between 20000 and the start of the OS's ephemeral range (Linux: 32768). A port
from bind(0) is an ephemeral one, and between the check and the server's own bind any
outbound connection (Ray starts dozens) may be given it: "Failed to bind to address". Below
the ephemeral range only an explicit bind can take it. Ray's worker ports (10002-19999) lie
below 20000. Where the ephemeral range leaves no room, it falls back to bind(0).
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

LOW = 20000


def ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 49152  # IANA's dynamic range: macOS, Windows


def free_port(host: str = "127.0.0.1") -> int:
    top = ephemeral_start()
    for port in random.sample(range(LOW, top), min(64, max(0, top - LOW))):
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
