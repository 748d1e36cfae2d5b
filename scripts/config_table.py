"""Print the configuration reference table of docs/configuration.md from the
KEYS table in flask_smg_history/config.py (run it after adding a key)."""

from flask_smg_history.config import KEYS

SIZES = {"SMG_HISTORY_MAX_REQUEST_BYTES": " (1 MiB)", "SMG_HISTORY_MAX_ITEM_BYTES": " (256 KiB)"}

print("| Key | Default | Type | Environment fallback | Meaning |")
print("|---|---|---|---|---|")
for key in KEYS:
    default = f"`{key.default!r}`{SIZES.get(key.name, '')}"
    env = ", ".join(f"`{name}`" for name in key.env)
    kind = key.kind + (" or None" if key.optional else "")
    print(f"| `{key.name}` | {default} | {kind} | {env} | {key.doc} |")
