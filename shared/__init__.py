"""The vocabulary both halves share: op specs and keys, op modules, search spaces, architectures, wire schemas.

Depends on nothing of ours.
"""
