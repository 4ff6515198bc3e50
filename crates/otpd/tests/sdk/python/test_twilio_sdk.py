"""The official `twilio` package from PyPI, pointed at a real otpd by its Verify base URL.

Started by crates/otpd/tests/e2e_twilio_sdk.rs, which runs otpd with the HTTP sink provider
and passes:
  OTPD_BASE_URL  the server (e.g. http://127.0.0.1:40123)
  OTPD_API_KEY   an admin API key (the SDK's auth token slot)
  OTPD_SINK_URL  the sink's /messages URL; GET lists the messages otpd delivered

Only the SDK's public surface is used: `Client(account_sid, auth_token)`, then
`client.verify.base_url = ...` — the one-line change docs/twilio-migration.md shows.
"""

import json
import os
import threading
import time
import unittest
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qsl

from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client

BASE_URL = os.environ["OTPD_BASE_URL"]
API_KEY = os.environ["OTPD_API_KEY"]
SINK_URL = os.environ["OTPD_SINK_URL"]


def client():
    c = Client("otpd", API_KEY)
    c.verify.base_url = BASE_URL
    return c


def code_for(to, count=1, timeout=10.0):
    """The code of the `count`th message the sink received for `to`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        with urllib.request.urlopen(SINK_URL) as reply:
            messages = [m for m in json.load(reply) if m.get("to") == to]
        if len(messages) >= count:
            body = messages[count - 1]["body"]
            start = body.index("code is ") + len("code is ")
            digits = ""
            for ch in body[start:]:
                if not ch.isdigit():
                    break
                digits += ch
            return digits
        time.sleep(0.05)
    raise AssertionError(f"no message to {to} within {timeout}s")


def wrong(code):
    return "".join(str((int(d) + 1) % 10) for d in code)


class TwilioSdkAgainstOtpd(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.client = client()
        cls.service = cls.client.verify.v2.services.create(
            friendly_name="SDK Shop", code_length=6
        )

    def verify(self):
        return self.client.verify.v2.services(self.service.sid)

    def test_service_shape(self):
        s = self.service
        self.assertTrue(s.sid.startswith("VA") and len(s.sid) == 34)
        self.assertEqual(s.friendly_name, "SDK Shop")
        self.assertEqual(s.code_length, 6)
        self.assertTrue(s.url.startswith(BASE_URL))
        fetched = self.verify().fetch()
        self.assertEqual(fetched.sid, s.sid)
        self.assertIsNotNone(fetched.date_created.year)

    def test_send_wrong_then_right_code_fetch(self):
        to = "+14155550201"
        v = self.verify().verifications.create(to=to, channel="sms")
        self.assertEqual(v.status, "pending")
        self.assertTrue(v.sid.startswith("VE"))
        self.assertEqual(v.to, to)
        self.assertEqual(len(v.send_code_attempts), 1)
        code = code_for(to)

        bad = self.verify().verification_checks.create(to=to, code=wrong(code))
        self.assertEqual(bad.status, "pending")
        self.assertFalse(bad.valid)

        good = self.verify().verification_checks.create(to=to, code=code)
        self.assertEqual(good.status, "approved")
        self.assertTrue(good.valid)
        self.assertEqual(good.sid, v.sid)

        fetched = self.verify().verifications(v.sid).fetch()
        self.assertEqual(fetched.status, "approved")
        self.assertEqual(fetched.date_created.tzinfo is not None, True)

        # The spent code: Twilio's 20404.
        with self.assertRaises(TwilioRestException) as caught:
            self.verify().verification_checks.create(to=to, code=code)
        self.assertEqual(caught.exception.code, 20404)
        self.assertEqual(caught.exception.status, 404)

    def test_cancel_then_check_is_20404(self):
        to = "+14155550202"
        v = self.verify().verifications.create(to=to, channel="sms")
        code = code_for(to)
        canceled = self.verify().verifications(v.sid).update(status="canceled")
        self.assertEqual(canceled.status, "canceled")
        with self.assertRaises(TwilioRestException) as caught:
            self.verify().verification_checks.create(verification_sid=v.sid, code=code)
        self.assertEqual(caught.exception.code, 20404)

    def test_too_many_checks_is_60202(self):
        to = "+14155550203"
        self.verify().verifications.create(to=to, channel="sms")
        bad = wrong(code_for(to))
        for _ in range(4):
            self.assertEqual(
                self.verify().verification_checks.create(to=to, code=bad).status,
                "pending",
            )
        with self.assertRaises(TwilioRestException) as caught:
            self.verify().verification_checks.create(to=to, code=bad)
        self.assertEqual(caught.exception.code, 60202)
        self.assertEqual(caught.exception.status, 429)

    def test_bad_parameters_are_60200(self):
        with self.assertRaises(TwilioRestException) as caught:
            self.verify().verifications.create(to="+14155550204", channel="sna")
        self.assertEqual(caught.exception.code, 60200)
        with self.assertRaises(TwilioRestException) as caught:
            self.verify().verifications.create(
                to="+14155550204", channel="sms", send_digits="1234"
            )
        self.assertEqual(caught.exception.code, 60200)
        self.assertIn("SendDigits", caught.exception.msg)

    def test_out_of_band_approval(self):
        to = "+14155550205"
        v = self.verify().verifications.create(to=to, channel="call")
        self.assertEqual(v.channel, "call")
        approved = self.verify().verifications(v.sid).update(status="approved")
        self.assertEqual(approved.status, "approved")
        self.assertTrue(approved.valid)

    def test_services_list_update_delete(self):
        extra = self.client.verify.v2.services.create(friendly_name="SDK Temp")
        sids = [s.sid for s in self.client.verify.v2.services.list(page_size=1)]
        self.assertIn(self.service.sid, sids)
        self.assertIn(extra.sid, sids)
        updated = self.client.verify.v2.services(extra.sid).update(
            code_length=8, do_not_share_warning_enabled=True
        )
        self.assertEqual(updated.code_length, 8)
        self.assertTrue(updated.do_not_share_warning_enabled)
        self.assertTrue(self.client.verify.v2.services(extra.sid).delete())
        with self.assertRaises(TwilioRestException) as caught:
            self.client.verify.v2.services(extra.sid).fetch()
        self.assertEqual(caught.exception.code, 20404)

    def test_verification_attempts(self):
        to = "+14155550206"
        v = self.verify().verifications.create(to=to, channel="sms")
        attempts = self.client.verify.v2.verification_attempts.list(
            verification_sid=v.sid
        )
        self.assertEqual(len(attempts), 1)
        self.assertTrue(attempts[0].sid.startswith("VL"))
        self.assertEqual(attempts[0].verification_sid, v.sid)
        one = self.client.verify.v2.verification_attempts(attempts[0].sid).fetch()
        self.assertEqual(one.channel_data["to"], to)

    def test_check_with_both_to_and_verification_sid(self):
        a, b = "+14155550211", "+14155550212"
        va = self.verify().verifications.create(to=a, channel="sms")
        vb = self.verify().verifications.create(to=b, channel="sms")
        code = code_for(a)
        with self.assertRaises(TwilioRestException) as caught:
            self.verify().verification_checks.create(
                to=a, verification_sid=vb.sid, code=code
            )
        self.assertEqual(caught.exception.code, 20404)
        good = self.verify().verification_checks.create(
            to=a, verification_sid=va.sid, code=code
        )
        self.assertEqual(good.status, "approved")
        # A finished verification cannot be changed, even to its own status.
        with self.assertRaises(TwilioRestException) as caught:
            self.verify().verifications(va.sid).update(status="approved")
        self.assertEqual(caught.exception.code, 20404)

    def test_safe_list(self):
        number = "+14155550213"
        added = self.client.verify.v2.safelist.create(phone_number=number)
        self.assertTrue(added.sid.startswith("GN") and len(added.sid) == 34)
        self.assertEqual(added.phone_number, number)
        fetched = self.client.verify.v2.safelist(number).fetch()
        self.assertEqual(fetched.sid, added.sid)
        self.assertTrue(self.client.verify.v2.safelist(number).delete())
        with self.assertRaises(TwilioRestException) as caught:
            self.client.verify.v2.safelist(number).fetch()
        self.assertEqual(caught.exception.code, 20404)

    def test_attempts_summary_and_templates(self):
        to = "+14155550214"
        self.verify().verifications.create(to=to, channel="sms")
        summary = self.client.verify.v2.verification_attempts_summary().fetch(
            verify_service_sid=self.service.sid, country="US", channel="sms"
        )
        self.assertGreaterEqual(summary.total_attempts, 1)
        self.assertEqual(
            summary.total_attempts,
            summary.total_converted + summary.total_unconverted,
        )
        rbm = self.client.verify.v2.verification_attempts_summary().fetch(
            channel="rbm"
        )
        self.assertEqual(rbm.total_attempts, 0)
        self.assertEqual(
            self.client.verify.v2.verification_attempts.list(channel="rbm"), []
        )
        templates = self.client.verify.v2.templates.list()
        self.assertEqual(len(templates), 2)
        self.assertTrue(all(t.sid.startswith("HJ") for t in templates))
        self.assertIn("en", templates[0].translations)
        v = self.verify().verifications.create(
            to="+14155550215", channel="sms", template_sid=templates[1].sid
        )
        self.assertEqual(v.status, "pending")
        with self.assertRaises(TwilioRestException) as caught:
            self.verify().verifications.create(
                to="+14155550215", channel="sms",
                template_sid="HJ00000000000000000000000000000000",
            )
        self.assertEqual(caught.exception.code, 60228)

    def test_status_callbacks_validate_with_request_validator(self):
        received = []

        class Receiver(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length).decode()
                received.append(
                    (self.path, self.headers.get("X-Twilio-Signature"), dict(parse_qsl(body)))
                )
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        server = HTTPServer(("127.0.0.1", 0), Receiver)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_port}/otp/status?tenant=42"
        try:
            svc = self.client.verify.v2.services.create(friendly_name="SDK Callbacks")
            # OtpdStatusCallback is otpd's extension parameter; the SDK's own client sends it.
            reply = self.client.request(
                "POST",
                f"{BASE_URL}/v2/Services/{svc.sid}",
                data={"OtpdStatusCallback": url},
            )
            self.assertEqual(reply.status_code, 200, reply.text)
            to = "+14155550207"
            v = self.client.verify.v2.services(svc.sid).verifications.create(
                to=to, channel="sms"
            )
            self.client.verify.v2.services(svc.sid).verification_checks.create(
                to=to, code=code_for(to)
            )
            deadline = time.time() + 10
            while len(received) < 2 and time.time() < deadline:
                time.sleep(0.05)
            statuses = sorted(params["Status"] for _, _, params in received)
            self.assertEqual(statuses, ["approved", "pending"])
            validator = RequestValidator(API_KEY)
            for path, signature, params in received:
                self.assertEqual(params["VerificationSid"], v.sid)
                self.assertTrue(validator.validate(url, params, signature))
                self.assertFalse(RequestValidator("another-token").validate(url, params, signature))
        finally:
            server.shutdown()
            server.server_close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
