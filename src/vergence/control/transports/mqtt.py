"""Commands over MQTT: `T/cmd` in (JSON or a text line) → the commander → `T/reply` out, or the topic a command's
`reply_to` names under `T/reply/`. The MQTT connection itself (and its frames, status and results) is
`outputs.mqtt.MqttBridge`, which hands each command payload here and publishes the answer."""

from __future__ import annotations

import unicodedata
from typing import TYPE_CHECKING, Any

from vergence.control.commander import Commander, error_reply
from vergence.control.parsing import as_object
from vergence.errors import CommandError

if TYPE_CHECKING:
    from vergence.context import Parts
    from vergence.outputs.base import Service

#: Longest part of a command's `reply_to` after `T/reply/`: room for a client id and a request path, no more.
REPLY_SUFFIX_MAX_BYTES = 128


def reply_topic_for(reply_to: Any, reply_topic: str) -> str:
    """Return the topic a command's `reply_to` names, or raise CommandError: it must be `<reply_topic>/<suffix>`, the
    suffix one or more non-empty levels without wildcards or control characters, at most REPLY_SUFFIX_MAX_BYTES.

    Confined to the reply namespace because vergence publishes with its own broker rights: whoever may publish a
    command must not be able to make it write on any other topic (its status, another device's commands)."""
    prefix = f"{reply_topic}/"
    if not isinstance(reply_to, str) or not reply_to.startswith(prefix):
        raise CommandError(f"reply_to must be a topic under {prefix} (such as {prefix}my-client)", code="invalid")
    suffix = reply_to.removeprefix(prefix)
    if not suffix or len(suffix.encode()) > REPLY_SUFFIX_MAX_BYTES:
        raise CommandError(
            f"reply_to: the part after {prefix} must be 1 to {REPLY_SUFFIX_MAX_BYTES} bytes", code="invalid"
        )
    if "" in suffix.split("/"):
        raise CommandError("reply_to may not have empty levels (// or a trailing /)", code="invalid")
    if any(char in "+#" or unicodedata.category(char) == "Cc" for char in suffix):
        raise CommandError("reply_to may not hold wildcards (+ #) or control characters", code="invalid")
    return reply_to


def split_reply_to(payload: bytes) -> tuple[Any, Any]:
    """Split a command payload into (command for the commander, `reply_to` or None); text and bad JSON pass unchanged."""
    command = as_object(payload)
    if not isinstance(command, dict):
        return command, None
    return command, command.pop("reply_to", None)


class MqttCommands:
    """Answers the command payloads of `<topic>/cmd`."""

    def __init__(self, commander: Commander, topic: str) -> None:
        self._commander = commander
        self.reply_topic = f"{topic.rstrip('/')}/reply"

    async def answer(self, payload: bytes) -> tuple[str, dict[str, Any]]:
        """Run one command; return the topic its reply goes to and the reply."""
        command, reply_to = split_reply_to(payload)
        try:
            topic = self.reply_topic if reply_to is None else reply_topic_for(reply_to, self.reply_topic)
        except CommandError as err:  # refused, and not run: answered where replies go by default
            command_id = command.get("id") if isinstance(command, dict) else None
            return self.reply_topic, error_reply(command_id, err)
        return topic, await self._commander.handle(command, source="mqtt")


def create_service(parts: Parts) -> Service:
    """The `[mqtt]` service: frames, status and results (outputs.mqtt), this module's commands on `T/cmd`."""
    from vergence.outputs.mqtt import MqttBridge  # ConfigError naming paho-mqtt when it is missing

    settings = parts.settings
    answer = MqttCommands(parts.commander, settings.mqtt.topic).answer
    return MqttBridge(settings.mqtt, parts.streams, parts.events, settings, answer)
