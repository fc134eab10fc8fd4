"""Layer 3, *tools*: everything that does a job with a file — cut, fuse, export and import, diff
and drift, check, stats, identify, info, watch, detect, the ONNX and PyTorch emitters of the
network description, many files at once (``batch``, ``walk``) and the demo model.
docs/architecture.md names the module of each."""
