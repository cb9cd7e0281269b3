"""What the loop in common.py leans on but a reader of it need not read first: the command line
and the rules by which tricks compose (flags.py), devices and precision (device.py), what a run
writes and reads back (archive.py), and the per-epoch reporting (report.py)."""
