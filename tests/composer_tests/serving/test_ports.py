"""free_port: servers started by tests and benches get a port no outbound connection can take."""

from __future__ import annotations

import socket

from composer.serving.ports import LOW, ephemeral_start, free_port


def test_free_port_is_bindable_and_below_the_ephemeral_range():
    ports = {free_port() for _ in range(20)}
    assert all(LOW <= p < ephemeral_start() for p in ports) and len(ports) > 1
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports.pop()))
