"""Embedded services for a fresh machine: the Tansu broker and a PostgreSQL server.

Both run as child processes of ``lalin up`` in their own sessions (so a terminal's Ctrl-C
reaches only lalin, which stops them in order) and with a parent-death signal (so they stop
even if lalin is killed).
"""
