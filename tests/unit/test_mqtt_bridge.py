"""The pure parts of the MQTT bridge: `reply_to` taken out of a command, topics it may reply on, JSON of plugin results."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from vergence.control.transports.mqtt import REPLY_SUFFIX_MAX_BYTES, reply_topic_for, split_reply_to
from vergence.errors import CommandError, ConfigError
from vergence.outputs.mqtt import import_paho, to_json


def test_reply_to_is_taken_out_of_a_json_command():
    command, reply_to = split_reply_to(b'{"type": "zoom", "value": 2, "id": "a1", "reply_to": "me/replies"}')
    assert command == {"type": "zoom", "value": 2, "id": "a1"}  # the command model forbids unknown keys
    assert reply_to == "me/replies"


def test_text_and_broken_json_go_to_the_commander_unchanged():
    for payload in (b"zoom 2", b"{broken", b'["zoom"]'):
        assert split_reply_to(payload) == (payload, None)
    assert split_reply_to(b'{"type": "status"}') == ({"type": "status"}, None)


def test_reply_to_is_confined_to_the_reply_namespace():
    for good in ("v/reply/me", "v/reply/client-7/req 3", "v/reply/é", "v/reply/" + "x" * REPLY_SUFFIX_MAX_BYTES):
        assert reply_topic_for(good, "v/reply") == good
    too_long = "v/reply/" + "x" * (REPLY_SUFFIX_MAX_BYTES + 1)
    outside = ("v/reply", "v/reply/", "v/replyx/a", "v/status", "v/cmd", "other/reply/a", "/v/reply/a", "")
    malformed = (
        "v/reply/a/#",
        "v/reply/+",
        "v/reply/a//b",
        "v/reply/a/",
        "v/reply/nul\0",
        "v/reply/\x1b[31m",
        too_long,
    )
    for bad in (*outside, *malformed, 7, None, ["v/reply/a"]):
        with pytest.raises(CommandError) as refused:
            reply_topic_for(bad, "v/reply")
        assert refused.value.code == "invalid" and "reply_to" in str(refused.value), bad


def test_plugin_results_with_numpy_values_become_plain_json():
    event = {"result": {"count": np.int64(3), "mean": np.float32(1.5), "box": np.array([1, 2, 3, 4])}}
    assert json.loads(to_json(event)) == {"result": {"count": 3, "mean": 1.5, "box": [1, 2, 3, 4]}}


def test_without_paho_the_bridge_is_a_config_error_naming_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "paho.mqtt.client", None)  # what the import sees when paho-mqtt is not installed
    with pytest.raises(ConfigError, match="pip install paho-mqtt"):
        import_paho()
