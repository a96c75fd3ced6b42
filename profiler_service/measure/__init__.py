"""Measurement engine: the protocol, the backends, the device fingerprint, the child-process runner."""
