"""Imported by the workers' fork server as it starts (first in `workers.PRELOAD`): the server dies
with the command that started it (see `lifeline.py`). Importing it anywhere else would tie that
process to its parent too, which is why it is a module of its own."""

from weightzoo.run.lifeline import die_with_parent

die_with_parent()
