"""The dashboard: people sign in, manage API keys, see credits and usage, try a photo.

`service.py` holds the logic (no gRPC), `servicer.py` the thin DashboardService servicer,
`web.py` cookies and CSRF, `passwords.py` hashing, `static.py` the gateway routes that serve
the pages in gateway/dashboard/ from Envoy itself.
"""
