"""Checks the requests otpd's `aws_sms_voice` provider sent against AWS's official Python
SDK core (`botocore` from PyPI, pinned in tests/requirements-test.txt):

- the JSON body must be valid input of the operation in botocore's service model
  (`pinpoint-sms-voice-v2` for `aws_sms_voice`, `sesv2` for `aws_ses`; its
  `ParamValidator`: names, types, enums, required members);
- the headers botocore's serializer sets for the operation (`X-Amz-Target`,
  `Content-Type`) must be the same, and the method and path its own (`POST /`,
  `POST /v2/email/outbound-emails`);
- `Authorization` must be the Signature Version 4 that botocore's `SigV4Auth` computes for
  the same request (URL, headers, body) at the request's `X-Amz-Date`, with the service's
  signing name from the model.

stdin: {"service", "region", "access_key", "secret_key",
        "cases": [{"name", "operation", "method", "url", "headers": {lowercase: value}, "body"}]}
Prints one line per case and exits 1 on the first difference.
"""

import datetime
import json
import sys
from unittest import mock

import botocore.auth
import botocore.session
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.serialize import create_serializer
from botocore.validate import ParamValidator


def fail(name, what):
    print(f"FAIL {name}: {what}")
    sys.exit(1)


def main():
    spec = json.load(sys.stdin)
    model = botocore.session.get_session().get_service_model(spec["service"])
    signing_name = model.metadata["signingName"]
    creds = Credentials(spec["access_key"], spec["secret_key"])
    for case in spec["cases"]:
        name = case["name"]
        op = model.operation_model(case["operation"])
        params = json.loads(case["body"])
        report = ParamValidator().validate(params, op.input_shape)
        if report.has_errors():
            fail(name, report.generate_report())
        expected = create_serializer(model.metadata["protocol"]).serialize_to_request(params, op)
        headers = case["headers"]
        for key, value in expected["headers"].items():
            if headers.get(key.lower()) != value:
                fail(name, f"{key}: {headers.get(key.lower())!r} != {value!r}")
        if json.loads(expected["body"]) != params:
            fail(name, "botocore serializes the body differently")
        if case["method"] != expected["method"] or not case["url"].endswith(expected["url_path"]):
            fail(name, f"{case['method']} {case['url']} is not {expected['method']} {expected['url_path']}")
        when = datetime.datetime.strptime(headers["x-amz-date"], "%Y%m%dT%H%M%SZ")
        request = AWSRequest(
            method=case["method"],
            url=case["url"],
            data=case["body"].encode(),
            headers={k: headers[k.lower()] for k in ("Content-Type", "X-Amz-Target") if k.lower() in headers},
        )
        with mock.patch("botocore.auth.get_current_datetime", return_value=when):
            botocore.auth.SigV4Auth(creds, signing_name, spec["region"]).add_auth(request)
        if request.headers["Authorization"] != headers.get("authorization"):
            fail(name, f"Authorization {headers.get('authorization')!r} != {request.headers['Authorization']!r}")
        print(f"ok {name}")


main()
