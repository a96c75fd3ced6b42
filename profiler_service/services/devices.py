"""Devices: the machine a table was measured on, with its fingerprint."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from profiler_service.db.models import Device, utcnow


def get_device(session: Session, name: str) -> Device | None:
    return session.scalar(select(Device).where(Device.name == name))


def ensure_device(session: Session, name: str, fingerprint: dict | None = None) -> Device:
    """Get or create; a given fingerprint replaces the stored one (library upgrades change it)."""
    device = get_device(session, name)
    if device is None:
        try:
            # Savepoint: another worker on a shared database may create the same device concurrently.
            with session.begin_nested():
                device = Device(name=name, fingerprint=fingerprint or {})
                session.add(device)
        except IntegrityError:
            device = get_device(session, name)
            assert device is not None
    elif fingerprint is not None and fingerprint != device.fingerprint:
        device.fingerprint = fingerprint
        device.updated_at = utcnow()
        session.flush()
    return device
