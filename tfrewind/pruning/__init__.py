"""Pruning: pure mask maths, round schedules, and masks on TF-MOT wrappers."""
