"""Providers the worker applies commands for, by name."""
