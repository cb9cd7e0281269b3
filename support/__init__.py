"""What the loop in common.py leans on but a reader of it need not read first, one job a file:
- sources.py: where the images are (--data: CIFAR or a folder tree) and their fingerprint;
- datasets.py: the images decoded, cached and held in memory (or streamed), and which a run uses;
- flags.py: the command line's flags, and what follows from them (the data's defaults, the run folder);
- tricks.py: which modules a run's tricks are (the script, --with NAME or PATH) and how they compose;
- nets.py: the net's set-up; cuda_graph.py: the step as one CUDA graph;
- device.py: devices, torchrun's processes and precision;
- archive.py: what a run saves and reads back (last.pt, log.jsonl, result.json, model.pt);
- runfolder.py: the run folder kept safe (the lock, whole writes, --force, Ctrl-C while saving);
- report.py: what a run prints; teacher.py: distill.py's teacher.
Nothing here imports common.py or tools/, and no file here imports one that imports it back."""
