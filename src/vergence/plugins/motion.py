"""Motion detection in a region of interest: the share of pixels that changed since the previous frame.

Options: `roi` (an ROI name; default the whole frame), `threshold` (luma change counted as motion, default 25),
`min_area_pct` (changed share that means motion, default 0.5). Publishes `{"motion", "area_pct", "roi"}` when the
verdict changes and once a second while it holds; draws the region red while there is motion.
"""

from __future__ import annotations

import time
from typing import Any

import cv2
import numpy as np

_previous: dict[str, np.ndarray] = {}  # per camera: the last blurred luma of the region
_last: dict[str, tuple[bool, float]] = {}  # per camera: the last verdict published and when


def process(frame: Any, ctx: Any) -> None:
    """Compare the region with the previous frame's; report and draw motion."""
    roi_name = ctx.options.get("roi")
    gray = frame.gray()
    if roi_name:
        region = ctx.roi_view(roi_name, gray)  # a clear KeyError naming the known ROIs when it does not exist
        rect = ctx.rois[roi_name]
        box = (rect.x1, rect.y1, rect.x2, rect.y2)
    else:
        region, box = gray, (0, 0, frame.width, frame.height)
    # A small blur first, so sensor noise and compression artefacts do not count as motion.
    small = cv2.GaussianBlur(cv2.resize(region, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA), (5, 5), 0)
    previous = _previous.get(ctx.camera)
    _previous[ctx.camera] = small
    if previous is None or previous.shape != small.shape:
        return
    changed = cv2.absdiff(small, previous) > float(ctx.options.get("threshold", 25))
    area_pct = 100.0 * float(np.count_nonzero(changed)) / changed.size
    motion = area_pct >= float(ctx.options.get("min_area_pct", 0.5))
    if motion:
        ctx.draw.rect(*box, colour="red", thickness=3)
    now = time.monotonic()
    last_motion, last_at = _last.get(ctx.camera, (None, 0.0))
    if motion != last_motion or now - last_at >= 1.0:
        _last[ctx.camera] = (motion, now)
        ctx.publish({"motion": motion, "area_pct": round(area_pct, 2), "roi": roi_name})
