#!/bin/sh
# Thin wrapper kept for the documented path: initialize Vault and create (or, with --rotate,
# rotate) the vault_unseal_key Docker secret. All the work is `vault-entrypoint bootstrap`;
# options and their environment variables are listed by `vault-entrypoint bootstrap --help`.
# Keys and tokens are never passed as arguments: they go to 0600 files.
set -eu
if command -v vault-entrypoint >/dev/null 2>&1; then
    exec vault-entrypoint bootstrap "$@"
fi
here=$(cd "$(dirname "$0")/../.." && pwd)
if [ -x "$here/.venv/bin/vault-entrypoint" ]; then
    exec "$here/.venv/bin/vault-entrypoint" bootstrap "$@"
fi
echo "vault-bootstrap.sh: vault-entrypoint is not installed (pip install vault-entrypoint)" >&2
exit 127
