"""Abnormality by synthesis: hide part of an image, synthesise it from its surroundings, score the difference."""
