"""Passes: turn a function into semantically equivalent variants by cloning and mutating its IR."""
