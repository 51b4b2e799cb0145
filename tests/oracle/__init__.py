"""Differential-testing harness against the real DataScript (see README.md here)."""
