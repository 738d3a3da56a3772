"""The data a run draws from: the sequence space, the 15 patterns, their pools of members, each subject
model's training rows, and the probe (signature) and benchmark sets. Nothing here reads the config."""
