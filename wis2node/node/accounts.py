"""The broker's accounts, known alike to the VM's tools (standard library only) and to the
operator's side (endpoints, payload, verify)."""

# WIS2 convention: Global Brokers subscribe with these read-only, non-secret credentials.
READ_ONLY_USER = "everyone"
READ_ONLY_PASSWORD = "everyone"
# The one account that may publish; its password is generated for each node and never in user data.
PUBLISHER_USER = "wis2-publisher"
