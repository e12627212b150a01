"""Tests of the delivery domain."""
