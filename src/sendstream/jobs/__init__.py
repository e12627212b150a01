"""Operator view of the durable job queue: list, inspect, retry, cancel."""
