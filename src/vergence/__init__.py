"""vergence: low-latency camera streaming with live digital pan/tilt/zoom."""

__version__ = "0.1.0"
