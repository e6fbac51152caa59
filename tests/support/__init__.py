"""Fixtures the tests and the benchmarks (bench/) share: a private network namespace (netns), the Chromium launch recipe
(chromium). Development tools of a checkout, like the tests themselves: nothing of the installed package imports them."""
