"""Code generated from protos/flight.proto by scripts/generate_protos.py; never edit by hand."""
