"""Placeholder: double opt-in confirmation."""
