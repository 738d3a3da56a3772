"""weightzoo: datasets of trained subject models for training LLM interpreters."""

__version__ = "0.6.0"
