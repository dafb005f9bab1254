"""Side-by-side benchmark of flight_secure against pyarrow.flight (``python -m bench``).

Each implementation gets its own server process and its own client worker
process; workloads run in ABBA order and are compared pair by pair.
"""
