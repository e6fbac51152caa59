"""Fixtures the tests and the benchmarks (bench/) share: a private network namespace (netns), the Chromium launch recipe
(chromium), ffmpeg as the receiver of the UDP output (udp_receiver), a shaken scene and a motion meter for the
stabilizer (shaken). Development tools of a checkout, like the tests themselves: nothing of the installed package
imports them."""
