"""``python -m flight_secure``: the ``flight-secure`` command."""

from flight_secure.cli import main

raise SystemExit(main())
