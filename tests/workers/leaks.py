"""Searching everything the service wrote for a secret, in every form it could take there.

A place is one thing the service wrote that someone could read: a database table, a log file,
a Redis key, an S3 object, an API response. Each is searched for every secret in its plain
form and its base64 forms. Base64 needles are cut so that they match the secret wherever it
sits inside a longer base64 stream (a Celery message body, a SASL PLAIN blob), at any of the
three byte alignments; runs of base64 in a place are also decoded and searched again.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import boto3
import redis
from sqlalchemy import create_engine, inspect, text


@dataclass(frozen=True)
class Place:
    kind: str  # database, log, redis, s3, response
    name: str
    data: bytes


@dataclass(frozen=True)
class Finding:
    place: str
    secret: str  # the label of the secret, never the secret itself
    form: str


_ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "base64": base64.b64encode,
    "base64url": base64.urlsafe_b64encode,
}


def secret_forms(secret: str, user: str | None = None) -> dict[str, bytes]:
    """The byte strings whose presence would reveal the secret."""
    raw = secret.encode()
    forms = {"plain": raw, "hex": raw.hex().encode()}
    for name, encode in _ENCODERS.items():
        full = encode(raw)
        forms[name] = full
        forms[f"{name} unpadded"] = full.rstrip(b"=")
        for shift in (0, 1, 2):
            # The characters that depend on the secret's bytes alone, when `shift` other bytes
            # precede it in the stream.
            stream = encode(b"\0" * shift + raw)
            forms[f"{name} inside a stream, offset {shift}"] = stream[
                math.ceil(8 * shift / 6):(8 * (shift + len(raw))) // 6]
        if user is not None:
            # SASL PLAIN's initial response (SMTP AUTH PLAIN, IMAP AUTHENTICATE PLAIN). LOGIN
            # sends base64(user) and base64(password) apart, the forms above.
            forms[f"SASL PLAIN {name}"] = encode(b"\0" + user.encode() + b"\0" + raw)
    return forms


_BASE64_RUN = re.compile(rb"[A-Za-z0-9+/_-]{16,}={0,2}")


def _decoded_runs(data: bytes, depth: int = 2) -> Iterator[bytes]:
    """Whatever the base64 runs in data decode to, recursively (a Celery message in Redis
    is JSON whose body is base64 of JSON)."""
    if depth == 0:
        return
    for match in _BASE64_RUN.finditer(data):
        run = match.group(0)
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                decoded = decode(run + b"=" * (-len(run) % 4))
            except (binascii.Error, ValueError):
                continue
            yield decoded
            yield from _decoded_runs(decoded, depth - 1)


class LeakSearch:
    def __init__(self, secrets: Mapping[str, tuple[str, str | None]]) -> None:
        """secrets maps a label to (secret, the user name it logs in with, if any)."""
        self.forms = {label: secret_forms(secret, user)
                      for label, (secret, user) in secrets.items()}

    def find(self, place: Place) -> list[Finding]:
        findings = []
        texts = [place.data, *_decoded_runs(place.data)]
        lowered = [t.lower() for t in texts]
        for label, forms in self.forms.items():
            for form, needle in forms.items():
                # Plain text is matched whatever its case (a lower-cased copy is still a leak);
                # base64 is case-sensitive.
                haystack, sought = (lowered, needle.lower()) if form == "plain" else (texts, needle)
                if any(sought in t for t in haystack):
                    findings.append(Finding(f"{place.kind}: {place.name}", label, form))
        return findings


# --- collecting the places ----------------------------------------------------------------------


def database_places(url: str) -> list[Place]:
    """Every table the database has (not only the ones the models know), every column."""
    engine = create_engine(url)
    try:
        places = []
        with engine.connect() as connection:
            for table in inspect(connection).get_table_names():
                result = connection.execute(text(f'SELECT * FROM "{table}"'))
                lines = [b"\t".join(column.encode() for column in result.keys())]
                lines += [b"\t".join(_cell(value) for value in row) for row in result]
                places.append(Place("database", table, b"\n".join(lines)))
        return places
    finally:
        engine.dispose()


def _cell(value: object) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value).encode("utf-8", "replace")


def log_places(paths: Iterable[Path]) -> list[Place]:
    return [Place("log", path.name, path.read_bytes()) for path in paths]


@contextmanager
def redis_monitor(url: str) -> Iterator[bytearray]:
    """Every command the Redis server receives meanwhile (MONITOR), so values that came and
    went (a Celery message queued, delivered, acked) are searched too, not only what is left."""
    kwargs = redis.Redis.from_url(url).connection_pool.connection_kwargs
    seen = bytearray()
    sock = socket.create_connection((kwargs.get("host", "localhost"), kwargs.get("port", 6379)))
    if kwargs.get("password"):
        sock.sendall(f"AUTH {kwargs['password']}\r\n".encode())
    sock.sendall(b"MONITOR\r\n")

    def read() -> None:
        while chunk := sock.recv(65536):
            seen.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield seen
    finally:
        sock.shutdown(socket.SHUT_RDWR)
        reader.join(timeout=10)
        sock.close()


def redis_places(url: str) -> list[Place]:
    """Every key of every database of the server, with its value whatever its type."""
    places = []
    root = redis.Redis.from_url(url)
    try:
        databases = [int(name[2:]) for name in root.info("keyspace")]
        connection = root.connection_pool.connection_kwargs
    finally:
        root.close()
    for db in databases:
        client = redis.Redis(host=connection.get("host", "localhost"),
                             port=connection.get("port", 6379), db=db)
        try:
            for key in client.scan_iter(count=1000):
                value = _redis_value(client, key)
                if value is not None:
                    places.append(Place("redis", f"db{db} {key.decode(errors='replace')}",
                                        key + b"\n" + value))
        finally:
            client.close()
    return places


def _redis_value(client: redis.Redis, key: bytes) -> bytes | None:
    kind = client.type(key).decode()
    if kind == "string":
        return client.get(key)
    if kind == "list":
        return b"\n".join(client.lrange(key, 0, -1))
    if kind == "hash":
        return b"\n".join(k + b"=" + v for k, v in client.hgetall(key).items())
    if kind == "set":
        return b"\n".join(sorted(client.smembers(key)))
    if kind == "zset":
        return b"\n".join(m for m, _ in client.zrange(key, 0, -1, withscores=True))
    if kind == "stream":
        return b"\n".join(entry_id + b" " + b" ".join(k + b"=" + v for k, v in fields.items())
                          for entry_id, fields in client.xrange(key))
    if kind == "none":  # expired between SCAN and TYPE
        return None
    raise AssertionError(f"Redis key {key!r} has a type the search cannot read: {kind}")


def s3_places(env: Mapping[str, str]) -> list[Place]:
    """Every object in the report bucket."""
    client = boto3.client("s3", endpoint_url=env["S3_ENDPOINT_URL"],
                          aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                          region_name=env["AWS_DEFAULT_REGION"])
    places = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=env["S3_BUCKET"]):
        for item in page.get("Contents", []):
            body = client.get_object(Bucket=env["S3_BUCKET"], Key=item["Key"])["Body"].read()
            places.append(Place("s3", item["Key"], body))
    return places
