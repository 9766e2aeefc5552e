"""The operator's tools: `clearbg-admin` (cli.py) on the database, and the same operations as
the gRPC AdminService (servicer.py), both through operations.py."""
