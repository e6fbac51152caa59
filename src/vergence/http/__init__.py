"""HTTP routes that are not a transport of commands or a video output: stream listing and statistics."""
