"""Authentication and authorization for Flight servers and clients.

The contracts live in :mod:`flight_secure.auth.base`; the gate that applies them
to every call in :mod:`flight_secure.auth.gate`; each scheme in its own module.
"""

from flight_secure.auth.base import (
    CallCredentials,
    CertificateInfo,
    ClientAuthHandler,
    ClientAuthReader,
    ClientAuthSender,
    HeaderLogin,
    Principal,
    ServerAuthHandler,
    ServerAuthReader,
    ServerAuthSender,
)

__all__ = [
    "CallCredentials",
    "CertificateInfo",
    "ClientAuthHandler",
    "ClientAuthReader",
    "ClientAuthSender",
    "HeaderLogin",
    "Principal",
    "ServerAuthHandler",
    "ServerAuthReader",
    "ServerAuthSender",
]
