"""Checks otpd's `infobip` provider against Infobip's official Python client
(`infobip-api-python-client` from PyPI, pinned in tests/requirements-test.txt):

- each request body otpd sent must parse as the client's request model
  (`SmsRequest` for SMS, `CallsAdvancedBody` for voice) and serialize back unchanged
  (so every field is one the API defines, spelled and typed as it defines it);
- the client's own `SmsApi.send_sms_messages` / `VoiceApi.send_advanced_voice_tts`,
  configured with the same base URL and API key and given that model, must send the same
  method, path, `Authorization` and body (its HTTP layer replaced by a recorder);
- each delivery report the test posted must parse as the client's report model
  (`SmsDeliveryResult`, `CallsReportResponse`) and serialize back unchanged.

stdin: {"base_url", "api_key",
        "cases": [{"name", "kind": "sms"|"voice", "method", "path", "authorization", "body"}],
        "reports": [{"name", "kind": "sms"|"voice", "body"}]}
Prints one line per case and exits 1 on the first difference.
"""

import datetime
import json
import sys
from urllib.parse import urlparse

from infobip_api_client import ApiClient, Configuration
from infobip_api_client.api.sms_api import SmsApi
from infobip_api_client.api.voice_api import VoiceApi
from infobip_api_client.models.calls_advanced_body import CallsAdvancedBody
from infobip_api_client.models.calls_report_response import CallsReportResponse
from infobip_api_client.models.sms_delivery_result import SmsDeliveryResult
from infobip_api_client.models.sms_request import SmsRequest


class Sent(Exception):
    pass


def same(model, sent):
    """Whether the model read back every field that was sent, with its value (times as
    the model's datetimes)."""
    if isinstance(sent, dict):
        return isinstance(model, dict) and set(model) == set(sent) and all(
            same(model[k], v) for k, v in sent.items()
        )
    if isinstance(sent, list):
        return isinstance(model, list) and len(model) == len(sent) and all(
            same(m, v) for m, v in zip(model, sent)
        )
    if isinstance(model, datetime.datetime):
        return isinstance(sent, str) and model == datetime.datetime.strptime(sent, "%Y-%m-%dT%H:%M:%S.%f%z")
    return model == sent


def fail(name, what):
    print(f"FAIL {name}: {what}")
    sys.exit(1)


def main():
    spec = json.load(sys.stdin)
    client = ApiClient(Configuration(host=spec["base_url"], api_key=spec["api_key"]))
    seen = []

    def record(method, url, headers=None, body=None, post_params=None, _request_timeout=None):
        seen.append({"method": method, "url": url, "headers": headers, "body": body})
        raise Sent()

    client.rest_client.request = record
    for case in spec["cases"]:
        name = case["name"]
        model = SmsRequest if case["kind"] == "sms" else CallsAdvancedBody
        parsed = model.from_dict(case["body"])
        if parsed.to_dict() != case["body"]:
            fail(name, f"body {case['body']} != the model's {parsed.to_dict()}")
        seen.clear()
        try:
            if case["kind"] == "sms":
                SmsApi(client).send_sms_messages(parsed)
            else:
                VoiceApi(client).send_advanced_voice_tts(parsed)
        except Sent:
            pass
        sdk = seen[0]
        if sdk["method"] != case["method"]:
            fail(name, f"method {case['method']} != {sdk['method']}")
        if urlparse(sdk["url"]).path != case["path"]:
            fail(name, f"path {case['path']} != {urlparse(sdk['url']).path}")
        if sdk["headers"].get("Authorization") != case["authorization"]:
            fail(name, "Authorization differs")
        if sdk["body"] != case["body"]:
            fail(name, f"body {case['body']} != the client's {sdk['body']}")
        print(f"ok {name}")
    for report in spec.get("reports", []):
        model = SmsDeliveryResult if report["kind"] == "sms" else CallsReportResponse
        parsed = model.from_dict(report["body"]).to_dict()
        if not same(parsed, report["body"]):
            fail(report["name"], f"{report['body']} != the model's {parsed}")
        print(f"ok {report['name']}")


main()
