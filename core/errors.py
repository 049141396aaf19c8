"""pqmon's exception tree.

    PqmonError
     +-- ConfigError          bad or missing setting; the message names the variable
     +-- RegistryError        unknown site/meter/user, bad registry CSV row
     +-- StoreError
          +-- StoreUnavailable   InfluxDB unreachable or 5xx: retry later
          +-- StoreRejected      InfluxDB said 4xx: the data or query is wrong, do not retry

Only the command-line edge (pqmon.cli) turns these into messages and exit codes.
"""


class PqmonError(Exception):
    """Base of every error pqmon raises on purpose."""


class ConfigError(PqmonError):
    pass


class RegistryError(PqmonError):
    pass


class StoreError(PqmonError):
    pass


class StoreUnavailable(StoreError):
    pass


class StoreRejected(StoreError):
    pass
