"""Recording to MP4 segments, the pre-event buffer and clips, and the recordings on disk."""
