"""Checks otpd's `sinch` provider against Sinch's official Python SDK (`sinch` from PyPI,
pinned in tests/requirements-test.txt):

- each request otpd sent must be the one `SinchClient(service_plan_id, sms_api_token,
  sms_region).sms.batches.send_sms` builds for the same message (method, path, bearer
  authorization, JSON body), its HTTP session replaced by a recorder;
- each callback signature the test made must be judged by the SDK's
  `SmsSinchEvent(app_secret).validate_authentication_header` as the test expects.

stdin: {"service_plan_id", "api_token", "region", "callback_secret",
        "cases": [{"name", "method", "path", "authorization", "body", "kwargs"}],
        "callbacks": [{"name", "body", "headers", "valid"}]}
Prints one line per case and exits 1 on the first difference.
"""

import json
import sys
from urllib.parse import urlparse

import requests
from sinch import SinchClient
from sinch.domains.sms.sinch_events.v1.sms_sinch_event import SmsSinchEvent


def fail(name, what):
    print(f"FAIL {name}: {what}")
    sys.exit(1)


def main():
    spec = json.load(sys.stdin)
    seen = []

    def record(self, method, url, **kwargs):
        seen.append({"method": method, "url": url, **kwargs})
        reply = requests.Response()
        reply.status_code = 201
        reply._content = json.dumps({"id": "01FC66621XXXXX119Z8PMV1QPQ", "to": ["+1"], "from": "x",
                                     "canceled": False, "body": "x", "type": "mt_text"}).encode()
        reply.headers["Content-Type"] = "application/json"
        return reply

    requests.Session.request = record
    client = SinchClient(service_plan_id=spec["service_plan_id"], sms_api_token=spec["api_token"],
                         sms_region=spec["region"])
    for case in spec["cases"]:
        name = case["name"]
        seen.clear()
        client.sms.batches.send_sms(**case["kwargs"])
        sdk = seen[0]
        if sdk["method"] != case["method"]:
            fail(name, f"method {case['method']} != {sdk['method']}")
        if urlparse(sdk["url"]).path != case["path"]:
            fail(name, f"path {case['path']} != {urlparse(sdk['url']).path}")
        if sdk["headers"].get("Authorization") != case["authorization"]:
            fail(name, f"Authorization differs: {sdk['headers'].get('Authorization')!r}")
        body = sdk.get("json")
        if body is None:
            body = json.loads(sdk.get("data") or "null")
        if body != case["body"]:
            fail(name, f"body {case['body']} != the SDK's {body}")
        print(f"ok {name}")
    events = SmsSinchEvent(spec["callback_secret"])
    for cb in spec.get("callbacks", []):
        valid = events.validate_authentication_header(cb["headers"], cb["body"])
        if valid != cb["valid"]:
            fail(cb["name"], f"validate_authentication_header says {valid}")
        print(f"ok {cb['name']}")


main()
