"""Schemathesis hooks of the admin API contract test (`federation/tests/openapi_contract.rs`).

JSON Schema cannot state every rule the server enforces; the OpenAPI document states
the rest in words (its `info.description`), and these hooks make the requests the test
generates obey them, so that every request it sends as valid is one the server must
accept. Nothing here relaxes a check: each hook only chooses values the rules allow.

- PEM fields (the formats `x-isthmus-*`) hold real certificates, made by the test.
- A cluster's `intermediate_pem` names its cluster: the path's name is set to it.
- Names within a list are unique (a policy's rules and limits, a cluster's gateways, an
  export's ports, whose numbers are unique too); an export's healthy endpoints are at
  most its total.
"""

import json
import os

import schemathesis
from hypothesis import strategies as st

with open(os.environ["ISTHMUS_CONTRACT_FIXTURES"], encoding="utf-8") as f:
    FIXTURES = json.load(f)

schemathesis.openapi.format("x-isthmus-trust-roots", st.sampled_from(FIXTURES["roots"]))
schemathesis.openapi.format("x-isthmus-retired-roots", st.sampled_from(FIXTURES["retired"]))
schemathesis.openapi.format(
    "x-isthmus-cluster-intermediate",
    st.sampled_from(sorted(FIXTURES["intermediates"].values())),
)


def _label(name, n):
    """A DNS label from `name`, made distinct by `-n`."""
    suffix = f"-{n}"
    head = str(name)[: 63 - len(suffix)].rstrip("-")
    return (head or "x") + suffix


def _unique_names(items):
    seen = set()
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            continue
        name, n = item["name"], 0
        while name in seen:
            n += 1
            name = _label(item["name"], n)
        item["name"] = name
        seen.add(name)


def _number(value):
    """Whether `value` is a JSON number (`8080` and `8080.0` alike; not a boolean)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _unique_ports(items):
    seen = set()
    for item in items:
        if not isinstance(item, dict) or not _number(item.get("port")):
            continue
        port = int(item["port"])
        while port in seen:
            port = port % 65535 + 1
        item["port"] = port
        seen.add(port)


@schemathesis.hook
def before_call(context, case, kwargs):
    """Runs before every request of every phase (stateful ones fill bodies from earlier
    answers after generation, so the rules are applied here, to what is sent)."""
    body = case.body
    if not isinstance(body, dict):
        return
    for key in ("rules", "rate_limits", "gateways", "ports"):
        if isinstance(body.get(key), list):
            _unique_names(body[key])
    if isinstance(body.get("ports"), list):
        _unique_ports(body["ports"])
    health = body.get("health")
    if isinstance(health, dict):
        healthy, total = health.get("healthy"), health.get("total")
        if _number(healthy) and _number(total) and healthy > total:
            health["healthy"] = total
    pem = body.get("intermediate_pem")
    if isinstance(pem, str) and case.path_parameters and "name" in case.path_parameters:
        for cluster, cert in FIXTURES["intermediates"].items():
            if cert == pem:
                case.path_parameters["name"] = cluster
