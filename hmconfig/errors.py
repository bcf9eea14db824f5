"""The exception tree, documented in one place.

Every error hmtel raises on purpose derives from HmtelError. ``retriable`` says
whether trying again later may succeed. ``str(err)`` is one line a user can act
on; the CLI prints it without a traceback and exits non-zero.

    HmtelError
    ├── SettingsError        bad config value (not retriable)
    ├── BrokerUnavailable    no broker answered in time (retriable)
    ├── BrokerToolMissing    Java or Maven missing for the local broker (not retriable)
    ├── BrokerAuthFailed     TLS or SASL refused by the broker (not retriable)
    └── SchemaError          a record fails its JSON Schema (not retriable); carries the JSON path
"""
from __future__ import annotations


class HmtelError(Exception):
    retriable: bool = False


class BrokerUnavailable(HmtelError):
    retriable = True


class BrokerToolMissing(HmtelError):
    retriable = False


class BrokerAuthFailed(HmtelError):
    retriable = False
