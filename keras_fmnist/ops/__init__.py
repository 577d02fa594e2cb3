"""Functional ops (backend-agnostic, channels-last)."""
