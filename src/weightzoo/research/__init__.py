"""The researcher's side of the loop: scoring an interpreter's completions against a dataset
(`evaluate.py`, with an lm-evaluation-harness task in `harness/`) and a report of what a dataset holds
(`inspect_report.py`)."""
