"""Synthetic bank generator: monthly source extracts per the default mapping, plus planted answers."""

from cimlib.synth._generate import generate

__all__ = ["generate"]
