"""Example processing plugins shipped with vergence (load with `module = "vergence.plugins.motion"`)."""
