"""The value types of libcamera's Python binding (`libcamera._libcamera`), as its pybind11 classes behave.

Only the behaviour picamera2 relies on: geometry, transforms, colour spaces, pixel formats, configurations, frame buffers,
requests, control ids and infos. The camera and its manager live in `camera.py`; what the hardware does, in `pipeline.py`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from typing import Any


class Size:
    """libcamera::Size."""

    def __init__(self, width: int = 0, height: int = 0) -> None:
        self.width, self.height = int(width), int(height)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Size) and (self.width, self.height) == (other.width, other.height)

    __hash__ = None  # type: ignore[assignment]  # pybind11 makes a class with == unhashable, as here

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"

    __repr__ = __str__


class Rectangle:
    """libcamera::Rectangle."""

    def __init__(self, x: int = 0, y: int = 0, width: int = 0, height: int = 0) -> None:
        self.x, self.y, self.width, self.height = int(x), int(y), int(width), int(height)

    @property
    def size(self) -> Size:
        return Size(self.width, self.height)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Rectangle) and self.as_tuple() == other.as_tuple()

    __hash__ = None  # type: ignore[assignment]

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.x, self.y, self.width, self.height)

    def __str__(self) -> str:
        return f"({self.x}, {self.y})/{self.width}x{self.height}"

    __repr__ = __str__


class Transform:
    """libcamera::Transform: flips and a transpose, built from flags or a rotation."""

    def __init__(
        self, other: Transform | None = None, *, rotation: int = 0, hflip: Any = 0, vflip: Any = 0, transpose: Any = 0
    ) -> None:
        if other is not None:
            self.hflip, self.vflip, self.transpose = other.hflip, other.vflip, other.transpose
            return
        if rotation % 360 not in (0, 180):
            raise ValueError(f"Invalid rotation {rotation}")  # 90 and 270 need a transpose: not modelled
        half_turn = rotation % 360 == 180
        self.hflip = bool(hflip) != half_turn
        self.vflip = bool(vflip) != half_turn
        self.transpose = bool(transpose)

    def __str__(self) -> str:
        names = [name for name in ("hflip", "vflip", "transpose") if getattr(self, name)]
        return f"<libcamera.Transform '{'/'.join(names) or 'identity'}'>"


class ColorSpace:
    """libcamera::ColorSpace. No __eq__ of its own: picamera2 installs one, and keeps these in a set."""

    class Primaries(enum.IntEnum):
        Raw = 0
        Smpte170m = 1
        Rec709 = 2
        Rec2020 = 3

    class TransferFunction(enum.IntEnum):
        Linear = 0
        Srgb = 1
        Rec709 = 2

    class YcbcrEncoding(enum.IntEnum):
        Null = 0
        Rec601 = 1
        Rec709 = 2
        Rec2020 = 3

    class Range(enum.IntEnum):
        Full = 0
        Limited = 1

    def __init__(
        self,
        primaries: Any = None,
        transferFunction: Any = None,  # the binding's keyword names
        ycbcrEncoding: Any = None,
        range: Any = None,
    ) -> None:
        if isinstance(primaries, ColorSpace):
            other = primaries
            primaries, transferFunction = other.primaries, other.transferFunction
            ycbcrEncoding, range = other.ycbcrEncoding, other.range
        self.primaries = primaries
        self.transferFunction = transferFunction
        self.ycbcrEncoding = ycbcrEncoding
        self.range = range

    @staticmethod
    def Raw() -> ColorSpace:
        cs = ColorSpace
        return cs(cs.Primaries.Raw, cs.TransferFunction.Linear, cs.YcbcrEncoding.Null, cs.Range.Full)

    @staticmethod
    def Srgb() -> ColorSpace:
        cs = ColorSpace
        return cs(cs.Primaries.Rec709, cs.TransferFunction.Srgb, cs.YcbcrEncoding.Null, cs.Range.Full)

    @staticmethod
    def Sycc() -> ColorSpace:
        cs = ColorSpace
        return cs(cs.Primaries.Rec709, cs.TransferFunction.Srgb, cs.YcbcrEncoding.Rec601, cs.Range.Full)

    @staticmethod
    def Smpte170m() -> ColorSpace:
        cs = ColorSpace
        return cs(cs.Primaries.Smpte170m, cs.TransferFunction.Rec709, cs.YcbcrEncoding.Rec601, cs.Range.Limited)

    @staticmethod
    def Rec709() -> ColorSpace:
        cs = ColorSpace
        return cs(cs.Primaries.Rec709, cs.TransferFunction.Rec709, cs.YcbcrEncoding.Rec709, cs.Range.Limited)

    @staticmethod
    def Rec2020() -> ColorSpace:
        cs = ColorSpace
        return cs(cs.Primaries.Rec2020, cs.TransferFunction.Rec709, cs.YcbcrEncoding.Rec2020, cs.Range.Limited)

    def key(self) -> tuple[Any, Any, Any, Any]:
        return (self.primaries, self.transferFunction, self.ycbcrEncoding, self.range)

    def __str__(self) -> str:
        names = {
            ColorSpace.Sycc().key(): "sYCC",
            ColorSpace.Smpte170m().key(): "SMPTE170M",
            ColorSpace.Rec709().key(): "Rec709",
            ColorSpace.Raw().key(): "RAW",
            ColorSpace.Srgb().key(): "sRGB",
        }
        return f"<libcamera.ColorSpace '{names.get(self.key(), 'custom')}'>"


class Orientation(enum.IntEnum):
    Rotate0 = 1
    Rotate0Mirror = 2
    Rotate180 = 3
    Rotate180Mirror = 4
    Rotate90Mirror = 5
    Rotate270 = 6
    Rotate90 = 7
    Rotate270Mirror = 8


class StreamRole(enum.IntEnum):
    Raw = 0
    StillCapture = 1
    VideoRecording = 2
    Viewfinder = 3


class ControlType(enum.IntEnum):
    Null = 0
    Bool = 1
    Byte = 2
    Integer32 = 4
    Integer64 = 5
    Float = 6
    String = 7
    Rectangle = 8
    Size = 9
    Point = 10


class PixelFormat:
    """libcamera::PixelFormat, by its name ("YUV420", "SRGGB10_CSI2P", …)."""

    def __init__(self, name: str | PixelFormat = "") -> None:
        self.name = name.name if isinstance(name, PixelFormat) else str(name)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PixelFormat) and self.name == other.name

    __hash__ = None  # type: ignore[assignment]

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<libcamera.PixelFormat '{self.name}'>"


class SensorConfiguration:
    """libcamera::SensorConfiguration: the sensor mode asked for (bit depth, output size)."""

    def __init__(self) -> None:
        self.bit_depth = 0
        self.output_size = Size()
        self.analog_crop = Rectangle()

    def is_valid(self) -> bool:
        return self.bit_depth > 0 and self.output_size.width > 0


class StreamFormats:
    """The pixel formats a stream offers and the sizes of each."""

    def __init__(self, sizes: dict[str, list[Size]]) -> None:
        self._sizes = sizes

    @property
    def pixel_formats(self) -> list[PixelFormat]:
        return [PixelFormat(name) for name in self._sizes]

    def sizes(self, pixel_format: PixelFormat) -> list[Size]:
        return list(self._sizes.get(str(pixel_format), []))


class Stream:
    """A configured stream of a camera."""

    def __init__(self, configuration: StreamConfiguration) -> None:
        self.configuration = configuration


class StreamConfiguration:
    """libcamera::StreamConfiguration."""

    def __init__(self, role: StreamRole, formats: StreamFormats) -> None:
        self.role = role
        self.formats = formats
        self.size = Size()
        self.pixel_format = PixelFormat()
        self.stride = 0
        self.frame_size = 0
        self.buffer_count = 0
        self.color_space: ColorSpace | None = None
        self.stream: Stream | None = None

    def __str__(self) -> str:
        return f"{self.size}-{self.pixel_format}"


class CameraConfiguration:
    """libcamera::CameraConfiguration: streams, orientation, sensor configuration; validate() adjusts them."""

    class Status(enum.IntEnum):
        Valid = 0
        Adjusted = 1
        Invalid = 2

    def __init__(self, camera: Any, configs: list[StreamConfiguration]) -> None:
        self._camera = camera
        self._configs = configs
        self.orientation = Orientation.Rotate0
        self.sensor_config: SensorConfiguration | None = None

    def at(self, index: int) -> StreamConfiguration:
        return self._configs[index]

    def __iter__(self) -> Iterator[StreamConfiguration]:
        return iter(self._configs)

    def __len__(self) -> int:
        return len(self._configs)

    @property
    def size(self) -> int:
        return len(self._configs)

    @property
    def empty(self) -> bool:
        return not self._configs

    def validate(self) -> CameraConfiguration.Status:
        return self._camera._validate(self)


class FrameMetadata:
    """What the driver wrote about a buffer: status, sequence, timestamp, bytes per plane."""

    class Status(enum.IntEnum):
        Success = 0
        Error = 1
        Cancelled = 2

    class Plane:
        def __init__(self, bytes_used: int = 0) -> None:
            self.bytes_used = bytes_used

    def __init__(self) -> None:
        self.status = FrameMetadata.Status.Success
        self.sequence = 0
        self.timestamp = 0
        self.planes: list[FrameMetadata.Plane] = []


class FrameBuffer:
    """A buffer of dma-buf planes (picamera2 allocates them and hands them in)."""

    class Plane:
        def __init__(self) -> None:
            self.fd = -1
            self.offset = 0
            self.length = 0

    def __init__(self, planes: list[FrameBuffer.Plane], cookie: int = 0) -> None:
        self.planes = list(planes)
        self.cookie = cookie
        self.metadata = FrameMetadata()
        self.metadata.planes = [FrameMetadata.Plane(p.length) for p in self.planes]


class ControlId:
    """A control's id, name and type; hashable, compared by identity as the binding's are."""

    def __init__(self, id: int, name: str, type: ControlType, vendor: str = "libcamera") -> None:
        self.id, self.name, self.type, self.vendor = id, name, type, vendor
        self.isArray = False
        self.size = 0

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"libcamera.ControlId({self.id}, {self.vendor}::{self.name})"


class ControlInfo:
    """A control's range and default."""

    def __init__(self, min: Any, max: Any, default: Any = None) -> None:
        self.min, self.max, self.default = min, max, default
        self.values: list[Any] = []

    def __repr__(self) -> str:
        return f"libcamera.ControlInfo({self.min}, {self.max}, {self.default})"


class Request:
    """A capture request: buffers per stream in, metadata out; controls to apply with it."""

    class Status(enum.IntEnum):
        Pending = 0
        Complete = 1
        Cancelled = 2

    class Reuse(enum.IntEnum):
        Default = 0
        ReuseBuffers = 1

    def __init__(self, cookie: int) -> None:
        self.cookie = cookie
        self.status = Request.Status.Pending
        self.sequence = 0
        self.buffers: dict[Stream, FrameBuffer] = {}
        self.controls: dict[ControlId, Any] = {}
        self.metadata: dict[ControlId, Any] = {}

    def add_buffer(self, stream: Stream, buffer: FrameBuffer) -> None:
        if stream in self.buffers:
            raise RuntimeError("Failed to add buffer")
        self.buffers[stream] = buffer

    def set_control(self, control: ControlId, value: Any) -> None:
        self.controls[control] = value

    @property
    def has_pending_buffers(self) -> bool:
        return self.status == Request.Status.Pending

    def reuse(self) -> None:
        """Make the request ready to queue again, keeping its buffers (Request::ReuseBuffers)."""
        self.status = Request.Status.Pending
        self.controls = {}
        self.metadata = {}
        for buffer in self.buffers.values():
            buffer.metadata.status = FrameMetadata.Status.Success

    def __str__(self) -> str:
        return f"Request({self.sequence}:{self.status.name}:{self.cookie})"
