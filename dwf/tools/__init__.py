"""Layer 3, *tools*: everything that does a job with a file — cut, fuse, export and import, diff,
check, stats, identify, the demo model."""
