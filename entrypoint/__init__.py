"""vault-entrypoint: PID-1 wrapper, retry-unseal and certificate delivery for Vault in Swarm."""
