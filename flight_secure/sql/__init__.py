"""Flight SQL over a folder of datasets, with DuckDB as the engine (``flight-secure[sql]``).

:class:`FlightSqlService` answers the Flight SQL commands; a Flight server passes it
the Flight SQL parts of its RPCs with a :class:`Caller` (who, with which rights).
Each statement runs in a DuckDB connection of its own holding only the datasets its
caller may read, on a locked database (:mod:`flight_secure.sql.sandbox`) reused only
for the same caller and rights (:mod:`flight_secure.sql.pool`), after DuckDB's parser
has named every table it touches (:mod:`flight_secure.sql.references`).
"""

from flight_secure.sql.service import FlightSqlService
from flight_secure.sql.statements import Caller, SqlLimits

__all__ = ["Caller", "FlightSqlService", "SqlLimits"]
