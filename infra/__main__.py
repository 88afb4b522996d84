"""``python -m infra`` runs the lalin CLI (same as the ``lalin`` console script)."""

from infra.cli import main

main()
