"""The papers' networks: build_model(name) and their parameter counts."""

from tfrewind.models.registry import PRESETS, build_model, counts  # noqa: F401
