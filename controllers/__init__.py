"""lalin's pure domain core.

Nothing in this package performs I/O, reads the clock, or makes random ids: time and
identifiers are passed in by the shells (``streams``, ``devices``, ``infra``). That is what
lets a replay of the archived event log reproduce every decision bit for bit.
"""
