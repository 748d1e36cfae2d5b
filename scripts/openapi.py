"""Write docs/openapi.json, the API's OpenAPI document as the blueprint serves
it at /v1/openapi.json (run it after changing a route or schema)."""

import json
from pathlib import Path

from flask import Flask

from flask_smg_history import SmgHistory

app = Flask("openapi")
SmgHistory(app)
spec = app.test_client().get("/v1/openapi.json").get_json()
target = Path(__file__).resolve().parents[1] / "docs" / "openapi.json"
target.write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
print(f"wrote {target}")
