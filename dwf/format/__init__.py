"""Layer 1, *format*: what Darknet files are — cfg tokenising, dialects, layer definitions, the
planner, the header, the records, the pure functions of plans, headers and sizes (the mismatch
diagnosis, the table of known networks, the figures) and the description of what a network
computes (its operations, the decoding of detections, Darknet's NMS). No file I/O here except
reading the shipped table; a cfg file is read by :mod:`dwf.io.cfgfile`."""
