"""Judging a trained pair: the stored weights (`quantize.py`), held-out scores and the verdict
(`pairs.py`, `validation.py`), and the independent audit of rows on fresh data (`audit.py`)."""
