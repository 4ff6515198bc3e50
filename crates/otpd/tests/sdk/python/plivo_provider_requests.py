"""Checks otpd's `plivo` provider against Plivo's official Python SDK (`plivo` from PyPI,
pinned in tests/requirements-test.txt):

- each request otpd sent must be the one `RestClient.messages.create` (SMS) or
  `RestClient.calls.create` (calls) builds for the same message (method, path, HTTP Basic
  authorization, JSON body), with the SDK's HTTP sending replaced by a recorder so
  nothing leaves the machine;
- each callback signature the test made (delivery and hangup callbacks, and the signed
  fetch of a call's answer_url) must be judged by the SDK's `validate_v3_signature` as
  the test expects (valid ones valid, forged ones not);
- each Plivo XML document otpd answered a call's fetch with must be the one the SDK's
  `plivoxml` builds for the same text (`ResponseElement` with one `SpeakElement`).

stdin: {"auth_id", "auth_token",
        "cases": [{"name", "api"?: "messages"|"calls", "method", "path", "authorization",
                   "body": {...}, "kwargs": {...}}],
        "callbacks": [{"name", "url", "nonce", "signature", "params": {...}, "valid": bool}],
        "xml": [{"name", "text", "language", "voice", "xml"}]}
Prints one line per case and exits 1 on the first difference.
"""

import json
import sys
from urllib.parse import urlparse

import plivo
from plivo import plivoxml
from plivo.utils.signature_v3 import validate_v3_signature


class Reply:
    status_code = 202
    url = ""

    def json(self, object_hook=None):
        body = {"api_id": "x", "message": "message(s) queued", "message_uuid": ["u-1"],
                "request_uuid": "u-1"}
        return json.loads(json.dumps(body), object_hook=object_hook)


def fail(name, what):
    print(f"FAIL {name}: {what}")
    sys.exit(1)


def main():
    spec = json.load(sys.stdin)
    client = plivo.RestClient(spec["auth_id"], spec["auth_token"])
    seen = []

    def record(request, **kwargs):
        seen.append(request)
        return Reply()

    client.send_request = record
    for case in spec["cases"]:
        name = case["name"]
        seen.clear()
        if case.get("api") == "calls":
            client.calls.create(**case["kwargs"])
        else:
            client.messages.create(**case["kwargs"])
        sdk = seen[0]
        if sdk.method != case["method"]:
            fail(name, f"method {case['method']} != {sdk.method}")
        if urlparse(sdk.url).path != case["path"]:
            fail(name, f"path {case['path']} != {urlparse(sdk.url).path}")
        if sdk.headers["Authorization"] != case["authorization"]:
            fail(name, "the Basic authorization differs")
        sdk_body = json.loads(sdk.body)
        if sdk_body != case["body"]:
            fail(name, f"body {case['body']} != the SDK's {sdk_body}")
        print(f"ok {name}")
    for cb in spec.get("callbacks", []):
        valid = validate_v3_signature(
            "POST", cb["url"], cb["nonce"], spec["auth_token"], cb["signature"], cb["params"]
        )
        if valid != cb["valid"]:
            fail(cb["name"], f"validate_v3_signature says {valid}")
        print(f"ok {cb['name']}")
    for doc in spec.get("xml", []):
        sdk = plivoxml.ResponseElement().add(
            plivoxml.SpeakElement(doc["text"], voice=doc["voice"], language=doc["language"], loop=1)
        ).to_string(False)
        if sdk != doc["xml"]:
            fail(doc["name"], f"{doc['xml']} != the SDK's {sdk}")
        print(f"ok {doc['name']}")


main()
