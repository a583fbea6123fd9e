"""Root of pgenrm's exception tree.

Every package (``infra``, ``stream``, ``reward``, ``prototypes``) has its own
``exceptions.py`` whose classes derive from :class:`PgenrmError`, so callers can
catch everything pgenrm raises with one ``except``::

    PgenrmError
    ├── ConfigurationError          (infra)
    ├── BrokerError                 (infra)
    │   └── BrokerStartError
    ├── InvalidEventError           (infra: bad input bound for a dead-letter topic)
    ├── ModelInstallError           (reward)
    ├── BackendError                (reward)
    ├── StoreError                  (prototypes)
    └── NotBuiltError               (a CLI capability that does not exist yet)
"""

from __future__ import annotations


class PgenrmError(Exception):
    """Base class of every error pgenrm raises on purpose."""


class ConfigurationError(PgenrmError):
    """A setting is missing or inconsistent."""


class BrokerError(PgenrmError):
    """The Kafka-protocol broker could not be reached or misbehaved."""


class BrokerStartError(BrokerError):
    """The embedded broker binary could not be started or never answered."""


class NotBuiltError(PgenrmError):
    """A capability that is declared but not implemented yet."""
