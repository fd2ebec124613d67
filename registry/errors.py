"""Registry exceptions.

Contract: every error the registry raises on purpose is a ``RegistryError``. Messages are
user-facing, one line, and name the problem (which file, which key, which name) so a CLI or
REST layer can print them verbatim.

- ``ValidationError``: the input is bad (malformed name, unparseable config, wrong shapes,
  pickle weights, NaN/Inf, unregistered base, ...). Nothing was stored.
- ``NotFoundError``: the expert / artifact asked for does not exist (or was removed).
- ``ConflictError``: the name is taken (ask for a new version) or the operation would break
  another record (e.g. removing a base that adapters still use).
"""


class RegistryError(Exception):
    """Base class of every error raised on purpose by the registry."""


class ValidationError(RegistryError):
    """Bad input; nothing was stored."""


class NotFoundError(RegistryError):
    """No such expert, version or artifact."""


class ConflictError(RegistryError):
    """Name taken, or the operation conflicts with other records."""
