"""The outage helpers do what the fault tests rely on."""

import socket

import pytest
import redis

from tests.servers.outages import TcpGate, restartable_redis


@pytest.fixture
def echo_server():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener


def test_gate_relays_refuses_cuts_and_reopens(echo_server):
    with TcpGate(echo_server.getsockname()[1]) as gate:
        client = socket.create_connection(("127.0.0.1", gate.port), timeout=5)
        behind, _ = echo_server.accept()
        client.sendall(b"ping")
        assert behind.recv(4) == b"ping"

        gate.close()
        try:  # the open session is reset (an orderly close would do as well)
            assert client.recv(4) == b""
        except ConnectionResetError:
            pass
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", gate.port), timeout=5)

        gate.open()
        with socket.create_connection(("127.0.0.1", gate.port), timeout=5) as again:
            again.sendall(b"back")
            assert echo_server.accept()[0].recv(4) == b"back"
        client.close()
        behind.close()


def test_redis_restarts_empty_on_the_same_port(tmp_path):
    with restartable_redis(tmp_path) as server:
        client = redis.Redis.from_url(server.url)
        client.rpush("mailconnect.probe", "message")
        server.restart_empty()
        assert client.llen("mailconnect.probe") == 0  # redis-py reconnects on its own
        client.close()
