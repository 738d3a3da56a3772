"""The output store: a row's columns (`rows.py`), self-vouching Parquet shards (`shards.py`), the guarded
folder (`store.py`), cohorts and staged parts (`cohorts.py`), per-epoch snapshots (`checkpoints.py`),
the dataset card (`card.py`) and the Hub upload (`hub.py`). It knows nothing of executors."""
