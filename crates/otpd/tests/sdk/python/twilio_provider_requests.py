"""Checks the requests otpd's `twilio` provider sent against the requests Twilio's official
Python SDK (`twilio` from PyPI, pinned in tests/requirements-test.txt) builds for the same
message: the SDK's own `Client.messages.create` / `Client.calls.create` and its TwiML
builder (`VoiceResponse.say`), with the SDK's HTTP client replaced by a recorder so nothing
leaves the machine.

stdin: {"account_sid", "cases": [{"name", "path", "authorization", "form": [[k, v], ...],
        "sdk": {"username", "password", "kind": "message"|"call", "kwargs": {...},
                "say": {"text", "voice", "language"}?}}]}
Prints one line per case and exits 1 on the first difference.
"""

import base64
import json
import sys
import xml.etree.ElementTree as ET

from twilio.http import HttpClient
from twilio.http.response import Response
from twilio.rest import Client
from twilio.twiml.voice_response import VoiceResponse


class Recorder(HttpClient):
    """The SDK's HTTP client, recording instead of sending."""

    def __init__(self):
        super().__init__(logger=None, is_async=False)
        self.seen = []

    def request(self, method, url, params=None, data=None, headers=None, auth=None,
                timeout=None, allow_redirects=False):
        self.seen.append({"method": method, "url": url, "data": dict(data or {}), "auth": auth})
        body = {"sid": "SM00000000000000000000000000000000", "status": "queued",
                "account_sid": "AC00000000000000000000000000000000"}
        return Response(201, json.dumps(body))


def twiml_tree(text):
    """A TwiML document as (tag, attributes, text, children), order of attributes aside."""
    def walk(e):
        return (e.tag, dict(sorted(e.attrib.items())), (e.text or "").strip(),
                [walk(c) for c in e])
    return walk(ET.fromstring(text))


def expected(account_sid, sdk):
    rec = Recorder()
    client = Client(sdk["username"], sdk["password"], account_sid, http_client=rec)
    kwargs = dict(sdk["kwargs"])
    if "say" in sdk:
        r = VoiceResponse()
        r.say(sdk["say"]["text"], voice=sdk["say"]["voice"], language=sdk["say"]["language"])
        kwargs["twiml"] = str(r)
    if sdk["kind"] == "message":
        client.messages.create(**kwargs)
    else:
        client.calls.create(**kwargs)
    return rec.seen[0]


def main():
    spec = json.load(sys.stdin)
    for case in spec["cases"]:
        want = expected(spec["account_sid"], case["sdk"])
        got_form = dict(case["form"])
        want_form = {k: str(v) for k, v in want["data"].items()}
        problems = []
        path = want["url"].split("api.twilio.com", 1)[1]
        if case["path"] != path:
            problems.append(f"path {case['path']} != SDK's {path}")
        user, password = want["auth"]
        basic = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        if case["authorization"] != basic:
            problems.append("Authorization differs from the SDK's HTTP Basic credentials")
        if "Twiml" in want_form:
            if twiml_tree(got_form.pop("Twiml", "<x/>")) != twiml_tree(want_form.pop("Twiml")):
                problems.append("TwiML differs from VoiceResponse.say's")
        if got_form != want_form:
            problems.append(f"form {sorted(got_form.items())} != SDK's {sorted(want_form.items())}")
        if problems:
            print(f"FAIL {case['name']}: " + "; ".join(problems))
            sys.exit(1)
        print(f"ok {case['name']}")


if __name__ == "__main__":
    main()
