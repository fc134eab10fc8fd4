"""Layer 1, *format*: what Darknet files are — cfg tokenising, dialects, layer definitions, the
planner, the header, the records, and the pure functions of plans, headers and sizes (the
mismatch diagnosis, the table of known networks). No file I/O here except reading a cfg's text
and the shipped table."""
