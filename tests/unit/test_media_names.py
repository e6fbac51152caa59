"""The one rule for media names: what a command may give is what the recordings API takes."""

from __future__ import annotations

import pytest

from vergence.media.names import (
    MediaNameError,
    check_media_file_name,
    check_name,
    is_media_file_name,
    media_file_name,
)


@pytest.mark.parametrize("name", ["north", "_x", "v1.2-final", "a..b", "A" * 80])
def test_a_name_a_command_may_give_makes_a_file_name_the_api_takes(name):
    assert check_name(name) == name
    for extension in (".jpg", ".mp4"):
        assert is_media_file_name(media_file_name(name, extension))
        assert is_media_file_name(media_file_name(f"{name}-cam0-20260101-000000-000-clip-100", extension))


@pytest.mark.parametrize("name", ["", ".", "..", ".hidden", "-rf", "a/b", "../a", "a\\b", "a b", "a\x00", "é"])
def test_hidden_option_like_or_path_names_are_refused(name):
    with pytest.raises(MediaNameError):
        check_name(name)
    assert not is_media_file_name(f"{name}.jpg")


def test_a_name_is_at_most_80_characters():
    with pytest.raises(MediaNameError, match="at most 80"):
        check_name("A" * 81)


def test_file_names_need_a_media_extension_and_fit_a_file_system():
    assert is_media_file_name("a" * 251 + ".mp4")
    for name in ("a" * 252 + ".mp4", "a.png", "a.jpg.part", ".a.jpg", "a"):
        assert not is_media_file_name(name)
        with pytest.raises(MediaNameError):
            check_media_file_name(name)
    with pytest.raises(MediaNameError):
        media_file_name("a", ".png")


def test_mcap_recordings_are_media_files_and_a_file_that_is_none_says_so(tmp_path):
    from vergence.media.names import is_media_file_name, media_file_name
    from vergence.recording.library import media_type, parse_name, probe_mcap

    assert media_file_name("cam0-20261205-101500-123", ".mcap") == "cam0-20261205-101500-123.mcap"
    assert is_media_file_name("cam0-20261205-101500-123-clip.mcap")
    assert media_type("a.mcap") == "application/x-mcap"
    info = parse_name("flight-cam0-20261205-101500-123-clip.mcap", ["cam0"])
    assert (info.kind, info.stream) == ("clip", "cam0")
    garbage = tmp_path / "cam0-20261205-101500-123.mcap"
    garbage.write_bytes(b"not an mcap file at all")
    probe = probe_mcap(garbage)
    assert probe.frames == 0 and probe.error is not None
