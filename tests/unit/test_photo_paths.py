"""A photo written by path (PiStreamer's `take_photo /mnt/sd/DCIM/x.jpg`) lands only inside [media] photo_dirs: a path
outside, a relative one, one through a symbolic link leading out, or one that is no .jpg is refused with its reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from vergence.errors import CommandError
from vergence.stills import allowed_photo_path


def test_a_path_inside_an_allowed_directory_is_taken(tmp_path: Path) -> None:
    dcim = tmp_path / "DCIM"
    (dcim / "100").mkdir(parents=True)
    assert allowed_photo_path(str(dcim / "IMG_1.jpg"), [dcim]) == dcim.resolve() / "IMG_1.jpg"
    assert allowed_photo_path(str(dcim / "100" / "IMG_2.JPG"), [tmp_path / "other", dcim]).name == "IMG_2.JPG"


@pytest.mark.parametrize(
    ("wanted", "code", "reason"),
    [
        ("{outside}/IMG.jpg", "forbidden", "outside [media] photo_dirs"),
        ("{dcim}/escape/IMG.jpg", "forbidden", "outside [media] photo_dirs"),  # a symbolic link leading out
        ("{dcim}/../IMG.jpg", "forbidden", "outside [media] photo_dirs"),
        ("DCIM/IMG.jpg", "invalid", "an absolute path"),
        ("{dcim}/IMG.png", "invalid", "an absolute path of a .jpg"),
        ("{dcim}/.hidden.jpg", "invalid", "an absolute path of a .jpg"),
        ("{dcim}/missing/IMG.jpg", "invalid", "no directory"),
    ],
)
def test_a_path_that_leads_elsewhere_is_refused(tmp_path: Path, wanted: str, code: str, reason: str) -> None:
    dcim, outside = tmp_path / "DCIM", tmp_path / "outside"
    dcim.mkdir()
    outside.mkdir()
    (dcim / "escape").symlink_to(outside)
    with pytest.raises(CommandError) as refused:
        allowed_photo_path(wanted.format(dcim=dcim, outside=outside), [dcim])
    assert refused.value.code == code and reason in str(refused.value), refused.value


def test_no_directory_is_allowed_by_default(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="none are set"):
        allowed_photo_path(str(tmp_path / "IMG.jpg"), [])
