"""A Foxglove WebSocket client written from the protocol (foxglove/ws-protocol's spec, subprotocol `foxglove.sdk.v1`),
with nothing of vergence's or of the foxglove-sdk package: JSON operations, the binary messages, and the little of
protobuf that `foxglove.CompressedVideo` and `CompressedImage` need.

Binary messages are little-endian: server 0x01 message data `u32 subscription id, u64 log time, payload`; server 0x03
service call response `u32 service id, u32 call id, u32 encoding length, encoding, payload`; client 0x01 message data
`u32 client channel id, payload`; client 0x02 service call request, laid out as the response.
"""

from __future__ import annotations

import base64
import json
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.sync.client import ClientConnection, connect

SUBPROTOCOL = "foxglove.sdk.v1"


@dataclass
class Message:
    subscription: int
    log_time_ns: int
    payload: bytes


@dataclass
class FoxgloveClient:
    connection: ClientConnection
    server_info: dict[str, Any] = field(default_factory=dict)
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)  # topic → advertised channel
    services: dict[str, dict[str, Any]] = field(default_factory=dict)  # name → advertised service
    messages: list[Message] = field(default_factory=list)
    responses: dict[int, tuple[str, bytes]] = field(default_factory=dict)  # call id → (encoding, payload)
    _next_id: int = 1

    @classmethod
    def open(cls, url: str, timeout_s: float = 10) -> FoxgloveClient:
        connection = connect(url, subprotocols=[SUBPROTOCOL], open_timeout=timeout_s, max_size=None, legacy=True)  # type: ignore[list-item]
        client = cls(connection)
        client.wait(lambda: bool(client.server_info) and bool(client.channels), "serverInfo and advertise", timeout_s)
        return client

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> FoxgloveClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    def receive(self, timeout_s: float) -> None:
        """Read one message from the server and file it."""
        data = self.connection.recv(timeout=timeout_s)
        if isinstance(data, str):
            operation = json.loads(data)
            op = operation.get("op")
            if op == "serverInfo":
                self.server_info = operation
            elif op == "advertise":
                for channel in operation["channels"]:
                    self.channels[channel["topic"]] = channel
            elif op == "advertiseServices":
                for service in operation["services"]:
                    self.services[service["name"]] = service
            elif op == "serviceCallFailure":
                self.responses[operation["callId"]] = ("failure", operation["message"].encode())
            return
        opcode = data[0]
        if opcode == 0x01:
            subscription, log_time = struct.unpack_from("<IQ", data, 1)
            self.messages.append(Message(subscription, log_time, data[13:]))
        elif opcode == 0x03:
            _service, call, length = struct.unpack_from("<III", data, 1)
            encoding = data[13 : 13 + length].decode()
            self.responses[call] = (encoding, data[13 + length :])

    def wait(self, done: Any, what: str, timeout_s: float = 10) -> None:
        deadline = time.monotonic() + timeout_s
        while not done():
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {what} within {timeout_s} s"
            try:
                self.receive(remaining)
            except TimeoutError:
                continue

    def subscribe(self, topic: str) -> int:
        subscription = self._id()
        operation = {
            "op": "subscribe",
            "subscriptions": [{"id": subscription, "channelId": self.channels[topic]["id"]}],
        }
        self.connection.send(json.dumps(operation))
        return subscription

    def unsubscribe(self, subscription: int) -> None:
        self.connection.send(json.dumps({"op": "unsubscribe", "subscriptionIds": [subscription]}))

    def call(self, service: str, request: dict[str, Any], timeout_s: float = 10) -> dict[str, Any]:
        """Call a service with a JSON request; its JSON response."""
        call = self._id()
        encoding = b"json"
        payload = json.dumps(request).encode()
        header = struct.pack("<BIII", 0x02, self.services[service]["id"], call, len(encoding))
        self.connection.send(header + encoding + payload)
        self.wait(lambda: call in self.responses, f"response to {service}", timeout_s)
        kind, body = self.responses.pop(call)
        assert kind == "json", (kind, body)
        return json.loads(body)

    def advertise(self, topic: str) -> int:
        """Advertise a JSON channel to publish on; its client channel id."""
        channel = self._id()
        operation = {
            "op": "advertise",
            "channels": [
                {
                    "id": channel,
                    "topic": topic,
                    "encoding": "json",
                    "schemaName": "command",
                    "schemaEncoding": "jsonschema",
                    "schema": json.dumps({"type": "object"}),
                }
            ],
        }
        self.connection.send(json.dumps(operation))
        return channel

    def publish(self, channel: int, message: dict[str, Any]) -> None:
        self.connection.send(struct.pack("<BI", 0x01, channel) + json.dumps(message).encode())


# ---- the little of protobuf needed: varints and length-delimited fields


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7


def protobuf_fields(data: bytes) -> dict[int, list[int | bytes]]:
    """Field number → its values (varints as ints, length-delimited as bytes; fixed-width as raw bytes)."""
    fields: dict[int, list[int | bytes]] = {}
    at = 0
    while at < len(data):
        key, at = _varint(data, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = _varint(data, at)
            fields.setdefault(number, []).append(value)
        elif wire == 2:
            length, at = _varint(data, at)
            fields.setdefault(number, []).append(data[at : at + length])
            at += length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            fields.setdefault(number, []).append(data[at : at + size])
            at += size
        else:
            raise ValueError(f"protobuf wire type {wire} at {at}")
    return fields


def field_numbers(channel: dict[str, Any]) -> dict[str, int]:
    """Field name → number of the message a channel advertises (its schema: a base64 FileDescriptorSet)."""
    assert channel["schemaEncoding"] == "protobuf", channel
    return descriptor_fields(base64.b64decode(channel["schema"]), channel["schemaName"])


def descriptor_fields(descriptor_set: bytes, schema_name: str) -> dict[str, int]:
    """Field name → number of `schema_name` in a FileDescriptorSet (1: file) of FileDescriptorProtos (4: message_type)
    of DescriptorProtos (1: name, 2: field) of FieldDescriptorProtos (1: name, 3: number)."""
    wanted = schema_name.rsplit(".", 1)[-1]
    for file in protobuf_fields(descriptor_set).get(1, []):
        for message in protobuf_fields(bytes(file)).get(4, []):  # type: ignore[arg-type]
            described = protobuf_fields(bytes(message))  # type: ignore[arg-type]
            if bytes(described[1][0]).decode() != wanted:  # type: ignore[arg-type]
                continue
            numbers = {}
            for field_proto in described.get(2, []):
                parts = protobuf_fields(bytes(field_proto))  # type: ignore[arg-type]
                numbers[bytes(parts[1][0]).decode()] = int(parts[3][0])  # type: ignore[arg-type]
            return numbers
    raise AssertionError(f"{wanted} is not in the schema")


@dataclass
class CompressedPicture:
    """foxglove.CompressedVideo / CompressedImage: timestamp {1 seconds, 2 nanos}, frame_id, data, format, at the
    field numbers the channel's schema gives."""

    stamp_ns: int
    frame_id: str
    data: bytes
    format: str

    @classmethod
    def parse(cls, payload: bytes, numbers: dict[str, int]) -> CompressedPicture:
        fields = protobuf_fields(payload)

        def value(name: str) -> bytes:
            return bytes(fields.get(numbers[name], [b""])[0])  # type: ignore[arg-type]

        stamp = protobuf_fields(value("timestamp"))
        seconds = int(stamp.get(1, [0])[0])  # type: ignore[arg-type]
        nanos = int(stamp.get(2, [0])[0])  # type: ignore[arg-type]
        return cls(seconds * 1_000_000_000 + nanos, value("frame_id").decode(), value("data"), value("format").decode())
