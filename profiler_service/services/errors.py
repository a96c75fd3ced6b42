"""Errors the service layer raises; the API maps them to status codes, the CLI to exit code 2."""

from __future__ import annotations


class ServiceError(Exception):
    status_code = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class NotFound(ServiceError):
    status_code = 404


class Invalid(ServiceError):
    """Bad input; the message starts with the field it concerns."""

    status_code = 422

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class Conflict(ServiceError):
    status_code = 409


class TooLarge(ServiceError):
    status_code = 413
