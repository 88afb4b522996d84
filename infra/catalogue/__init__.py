"""Declarative data shipped with lalin (topic catalogue, ...)."""
