"""Kafka stream processing (faust-streaming): folds detector and camera events into traffic
state and runs the decision loop. The fold and the loop arrive with the closed-loop work;
the event log, topics and archive they build on live in ``infra``."""
