from pathlib import Path

import pytest

from vergence.config import load_settings
from vergence.errors import ConfigError


def test_defaults_serve_the_test_camera_at_720p30_on_port_8000():
    settings = load_settings()
    camera = settings.cameras[0]
    assert (camera.id, camera.source, camera.size, camera.fps) == ("cam0", "testpattern", (1280, 720), 30.0)
    assert settings.server.port == 8000


def test_file_then_environment_then_flags(tmp_path: Path, monkeypatch):
    config = tmp_path / "vergence.toml"
    config.write_text(
        '[server]\nport = 9001\nhost = "127.0.0.1"\n[h264]\nbitrate_bps = 1000000\n'
        '[[cameras]]\nid = "left"\nfps = 15\nsize = "640x480"\n'
    )
    settings = load_settings(config)
    assert settings.server.port == 9001 and settings.cameras[0].id == "left" and settings.cameras[0].size == (640, 480)
    monkeypatch.setenv("VERGENCE_SERVER__PORT", "9002")
    monkeypatch.setenv("VERGENCE_H264__BITRATE_BPS", "3000000")
    settings = load_settings(config)
    assert settings.server.port == 9002 and settings.h264.bitrate_bps == 3_000_000
    settings = load_settings(config, camera_flags={"fps": 25}, server_flags={"port": 9003})
    assert settings.server.port == 9003 and settings.cameras[0].fps == 25 and settings.cameras[0].id == "left"


@pytest.mark.parametrize(
    ("flags", "key", "allowed"),
    [
        ({"fps": 0}, "cameras[0].fps", "0 < fps ≤ 240"),
        ({"size": "12x"}, "cameras[0].size", "WIDTHxHEIGHT"),
        ({"size": "1281x720"}, "cameras[0].size", "even"),
    ],
)
def test_invalid_values_name_the_key_and_the_allowed_range(flags, key, allowed):
    with pytest.raises(ConfigError) as caught:
        load_settings(camera_flags=flags)
    assert key in str(caught.value) and allowed in str(caught.value)


def test_bad_environment_and_file_values_name_their_key(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("VERGENCE_SERVER__PORT", "70000")
    with pytest.raises(ConfigError, match=r"server\.port.*1 … 65535"):
        load_settings()
    monkeypatch.delenv("VERGENCE_SERVER__PORT")
    config = tmp_path / "bad.toml"
    config.write_text("[jpeg]\nquality = 101\n")
    with pytest.raises(ConfigError, match=r"jpeg\.quality"):
        load_settings(config)
    config.write_text("[jpeg\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(config)
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")
    config.write_text("[server]\nprot = 1\n")
    with pytest.raises(ConfigError, match=r"server\.prot"):
        load_settings(config)


def test_webrtc_has_no_ice_server_unless_configured(tmp_path: Path):
    assert load_settings().webrtc.ice_servers == []
    config = tmp_path / "v.toml"
    config.write_text('[[webrtc.ice_servers]]\nurls = ["stun:10.0.0.1:3478"]\n')
    assert load_settings(config).webrtc.ice_servers[0].urls == ["stun:10.0.0.1:3478"]
    config.write_text('[[webrtc.ice_servers]]\nurls = ["http://stun.example"]\n')
    with pytest.raises(ConfigError, match=r"webrtc\.ice_servers\[0\]: .*not a stun:, turn: or turns: URL"):
        load_settings(config)


def test_environment_takes_json_lists_for_keys_of_a_section(monkeypatch):
    monkeypatch.setenv("VERGENCE_WEBRTC__ICE_SERVERS", '[{"urls": ["turn:10.0.0.2:3478"], "username": "u"}]')
    monkeypatch.setenv("VERGENCE_ZMQ__STREAMS", '["cam0"]')
    settings = load_settings()
    assert settings.webrtc.ice_servers[0].urls == ["turn:10.0.0.2:3478"]
    assert settings.webrtc.ice_servers[0].username == "u"
    assert settings.zmq.streams == ["cam0"]
    monkeypatch.setenv("VERGENCE_ZMQ__STREAMS", "[not json")
    with pytest.raises(ConfigError, match=r"zmq\.streams"):
        load_settings()


def test_whip_and_rtsp_entries_are_checked_where_they_are_written(tmp_path: Path, monkeypatch):
    config = tmp_path / "vergence.toml"
    whip = '[[whip]]\nid = "sfu"\nurl = "https://sfu.example/whip/robot"\ntoken = "s3cret-token"\n'
    config.write_text(whip + '[rtsp]\nenabled = true\nstreams = ["cam0"]\n')
    settings = load_settings(config)
    assert settings.whip[0].stream == "cam0" and settings.rtsp.port == 8554
    assert "s3cret-token" not in repr(settings)
    config.write_text('[[whip]]\nurl = "rtmp://sfu.example/live"\n')
    with pytest.raises(ConfigError, match=r"whip\[0\]\.url = .*http:// or https://"):
        load_settings(config)
    config.write_text(whip + '[[restream]]\nid = "sfu"\nurl = "rtmp://media/live"\n')
    with pytest.raises(ConfigError, match="udp, restream and whip ids must be unique"):
        load_settings(config)
    config.write_text('[[whip]]\nurl = "http://sfu/whip"\nstream = "cam9"\n')
    with pytest.raises(ConfigError, match=r"whip\[0\]\.stream = 'cam9' is not a stream id"):
        load_settings(config)
    config.write_text('[rtsp]\nenabled = true\nstreams = ["cam9"]\n')
    with pytest.raises(ConfigError, match=r"rtsp\.streams = 'cam9' is not a stream id"):
        load_settings(config)
    monkeypatch.setenv("VERGENCE_RTSP__PORT", "9554")  # the environment reaches the new sections too
    config.write_text("[rtsp]\nenabled = true\n")
    assert load_settings(config).rtsp.port == 9554
