"""The short intervals the housekeeping tests' meshes run with (see conftest.py)."""

#: How long a change may show PENDING_* with no progress before housekeeping steps in (noop_mesh).
PENDING_TIMEOUT_S = 4.0
#: Validity of amphora certificates, and how long before expiry housekeeping rotates them (amphora_mesh).
CERT_VALIDITY_S = 30.0
CERT_BUFFER_S = 20.0
