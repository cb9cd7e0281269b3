"""What the loop in common.py leans on but a reader of it need not read first: the data sets and
their fingerprint (datasets.py), the command line and the rules by which tricks compose
(flags.py), the net's set-up (nets.py), the step as one CUDA graph (cuda_graph.py), devices and
precision (device.py), what a run writes and reads back (archive.py), and what it prints
(report.py). Nothing here imports common.py or tools/."""
