"""Axeom's process supervisor: starts the acceptor and the workers, restarts them when they die."""
