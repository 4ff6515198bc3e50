"""Checks otpd's `sendgrid` provider against SendGrid's official Python library
(`sendgrid` from PyPI, pinned in tests/requirements-test.txt):

- each request otpd sent must be the one the library builds for the same email: the JSON
  of its `Mail` helper (`From`, `To`, subject, plain-text and HTML content, the
  `otpd_message_id` custom arg), the `Authorization` of `SendGridAPIClient` and the path
  of its `client.mail.send`;
- each Event Webhook signature the test made must be judged by the library's
  `EventWebhook.verify_signature` as the test expects.

stdin: {"api_key", "public_key",
        "cases": [{"name", "method", "path", "authorization", "body", "mail": {
            "from_email", "from_name", "to", "subject", "text", "html", "message_id"}}],
        "webhooks": [{"name", "body", "signature", "timestamp", "valid"}]}
Prints one line per case and exits 1 on the first difference.
"""

import json
import sys
from urllib.parse import urlparse

from sendgrid import SendGridAPIClient
from sendgrid.helpers.eventwebhook import EventWebhook
from sendgrid.helpers.mail import CustomArg, From, Mail, To


def fail(name, what):
    print(f"FAIL {name}: {what}")
    sys.exit(1)


def main():
    spec = json.load(sys.stdin)
    client = SendGridAPIClient(spec["api_key"])
    for case in spec["cases"]:
        name, mail = case["name"], case["mail"]
        built = Mail(
            from_email=From(mail["from_email"], mail["from_name"]),
            to_emails=To(mail["to"]),
            subject=mail["subject"],
            plain_text_content=mail["text"],
            html_content=mail["html"],
        )
        built.custom_arg = CustomArg("otpd_message_id", mail["message_id"])
        if built.get() != case["body"]:
            fail(name, f"body {case['body']} != the library's {built.get()}")
        if case["method"] != "POST" or urlparse(client.client.mail.send._build_url(None)).path != case["path"]:
            fail(name, f"{case['method']} {case['path']} is not the library's mail.send")
        if client.client.request_headers["Authorization"] != case["authorization"]:
            fail(name, "Authorization differs")
        print(f"ok {name}")
    verifier = EventWebhook(spec["public_key"])
    for hook in spec.get("webhooks", []):
        valid = verifier.verify_signature(hook["body"], hook["signature"], hook["timestamp"])
        if valid != hook["valid"]:
            fail(hook["name"], f"verify_signature says {valid}")
        print(f"ok {hook['name']}")


main()
