"""Running a dataset: one example's stages (`stages.py`), where units run (`executors.py`), which units
run and when the run stops (`scheduling.py`), the driver (`pipeline.py`), progress and TensorBoard
(`monitoring.py`), and the worker processes (`workers.py`, `lifeline.py`)."""
