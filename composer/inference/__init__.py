"""Inference: the sampling pipeline with multi-condition guidance (`pipeline`, `sampling`),
region editing at the user's resolution (`region`), interpolation and inversion
(`manipulation`), and LMD layouts (`layout`)."""
