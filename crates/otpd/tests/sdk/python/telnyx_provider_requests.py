"""Checks otpd's `telnyx` provider against Telnyx's official Python SDK (`telnyx` from
PyPI, with PyNaCl, pinned in tests/requirements-test.txt):

- each request otpd sent must be the one `Telnyx(...).messages.send` builds for the same
  message, or for calls the one `calls.dial`, `calls.actions.speak` or
  `calls.actions.hangup` builds (method, path, bearer authorization, Idempotency-Key,
  JSON body), with the SDK's HTTP transport replaced by a recorder
  (httpx.MockTransport) so nothing leaves the machine;
- each webhook signature the test made must be judged by the SDK's
  `verify_webhook_signature` (telnyx.lib.webhook_verification) as the test expects.

stdin: {"api_key", "public_key",
        "cases": [{"name", "api"?: "send"|"dial"|"speak"|"hangup", "call_control_id"?,
                   "method", "path", "headers": {...}, "body": {...}, "kwargs": {...}}],
        "webhooks": [{"name", "body", "headers": {...}, "valid": bool}]}
Prints one line per case and exits 1 on the first difference.
"""

import json
import sys

import httpx
from telnyx import Telnyx
from telnyx.lib.webhook_verification import WebhookVerificationError, verify_webhook_signature


def fail(name, what):
    print(f"FAIL {name}: {what}")
    sys.exit(1)


def main():
    spec = json.load(sys.stdin)
    seen = []

    def handler(request):
        seen.append(request)
        return httpx.Response(200, json={"data": {"id": "x", "record_type": "message"}})

    client = Telnyx(
        api_key=spec["api_key"],
        base_url="https://api.telnyx.com/v2",
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
        max_retries=0,
    )
    for case in spec["cases"]:
        name = case["name"]
        seen.clear()
        api = case.get("api", "send")
        if api == "dial":
            client.calls.dial(**case["kwargs"])
        elif api == "speak":
            client.calls.actions.speak(case["call_control_id"], **case["kwargs"])
        elif api == "hangup":
            client.calls.actions.hangup(case["call_control_id"], **case["kwargs"])
        else:
            client.messages.send(**case["kwargs"])
        sdk = seen[0]
        if sdk.method != case["method"]:
            fail(name, f"method {case['method']} != {sdk.method}")
        if sdk.url.path != case["path"]:
            fail(name, f"path {case['path']} != {sdk.url.path}")
        for header in ("authorization", "idempotency-key"):
            if sdk.headers.get(header) != case["headers"].get(header):
                fail(name, f"{header} differs")
        sdk_body = json.loads(sdk.content)
        if sdk_body != case["body"]:
            fail(name, f"body {case['body']} != the SDK's {sdk_body}")
        print(f"ok {name}")
    for hook in spec.get("webhooks", []):
        try:
            verify_webhook_signature(hook["body"], hook["headers"], spec["public_key"])
            valid = True
        except WebhookVerificationError:
            valid = False
        if valid != hook["valid"]:
            fail(hook["name"], f"verify_webhook_signature says {valid}")
        print(f"ok {hook['name']}")


main()
