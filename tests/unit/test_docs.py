"""The docs stay true to the code."""

from pathlib import Path

from pydantic import BaseModel

from vergence.config import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_every_config_key_is_documented():
    text = (DOCS / "config.md").read_text()
    for section_name, section in Settings.model_fields.items():
        model = section.annotation
        model = getattr(model, "__args__", (model,))[0]
        assert isinstance(model, type) and issubclass(model, BaseModel)
        heading = f"[[{section_name}]]" if section_name == "cameras" else f"[{section_name}]"
        assert heading in text, heading
        for key in model.model_fields:
            assert f"| `{key}` |" in text, f"{section_name}.{key} is not in docs/config.md"


def test_the_pi5_stereo_example_is_a_valid_config_for_two_synced_eyes():
    from vergence.config import load_settings
    from vergence.sources.picamera2 import Picamera2Source

    settings = load_settings(DOCS.parent / "examples" / "pi5-stereo.toml")
    assert [camera.source for camera in settings.cameras] == ["picamera2", "picamera2"]
    assert [camera.options["sync"] for camera in settings.cameras] == ["server", "client"]
    assert settings.stereo.enabled and settings.h264.encoder == "libx264"
    for camera in settings.cameras:
        Picamera2Source(camera)  # every option is one the backend accepts
