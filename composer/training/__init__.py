"""Training support: checkpoints written atomically and read back without unpickling, resume,
and the last good checkpoint after a non-finite loss (`checkpoint`). The loop itself is
`train.py`."""
