"""Planning: each example's patterns, target, architecture, rows and held-out sets (`examples.py`), a
pure function of (config, seed, example index), and the training job the engine is given (`jobs.py`)."""
