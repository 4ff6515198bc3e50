"""The official `twilio` package from PyPI against otpd's authenticator-app API (Entities,
Factors, Challenges under /v2), with codes from pyotp, an independent TOTP implementation.

Started by crates/otpd/tests/e2e_twilio_sdk.rs like test_twilio_sdk.py (OTPD_BASE_URL,
OTPD_API_KEY). Only the SDK's public surface is used.
"""

import base64
import json
import os
import threading
import time
import unittest
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qsl

import pyotp
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client

BASE_URL = os.environ["OTPD_BASE_URL"]
API_KEY = os.environ["OTPD_API_KEY"]


def client(key=API_KEY):
    c = Client("otpd", key)
    c.verify.base_url = BASE_URL
    return c


def native(method, path, body=None):
    """A call to otpd's native API with the master key."""
    req = urllib.request.Request(
        BASE_URL + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req) as r:
        text = r.read()
        return json.loads(text) if text else None


class Receiver:
    """A loopback HTTP server keeping every POST: (path, signature, idempotency token, form)."""

    def __init__(self):
        self.received = []
        self.lock = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                form = dict(parse_qsl(self.rfile.read(length).decode(), keep_blank_values=True))
                with outer.lock:
                    outer.received.append(
                        (
                            self.path,
                            self.headers.get("X-Twilio-Signature"),
                            self.headers.get("I-Twilio-Idempotency-Token"),
                            form,
                        )
                    )
                    outer.lock.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path):
        return f"http://127.0.0.1:{self.server.server_port}{path}"

    def wait_for(self, count, timeout=20):
        with self.lock:
            self.lock.wait_for(lambda: len(self.received) >= count, timeout)
            return list(self.received)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def code_at(secret, offset_steps, digits=6, interval=30):
    """The code an app shows `offset_steps` steps from now."""
    totp = pyotp.TOTP(secret, digits=digits, interval=interval)
    return totp.at(time.time() + offset_steps * interval)


def wrong(code):
    return "".join(str((int(d) + 5) % 10) for d in code)


class TwilioSdkFactorsAgainstOtpd(unittest.TestCase):
    def setUp(self):
        self.client = client()
        self.service = self.client.verify.v2.services.create(friendly_name="Acme")

    def test_totp_factor_lifecycle(self):
        identity = "ff483d1ff591898a9942916050d2ca3f"
        svc = self.client.verify.v2.services(self.service.sid)
        entity = svc.entities.create(identity=identity)
        self.assertTrue(entity.sid.startswith("YE"))
        self.assertEqual(entity.identity, identity)

        factor = svc.entities(identity).new_factors.create(
            friendly_name="Alice's phone", factor_type="totp", config_skew=2
        )
        self.assertTrue(factor.sid.startswith("YF"))
        self.assertEqual(factor.status, "unverified")
        self.assertEqual(factor.factor_type, "totp")
        self.assertEqual(factor.config["skew"], 2)
        secret = factor.binding["secret"]
        # pyotp reads the URI the app would scan.
        parsed = pyotp.parse_uri(factor.binding["uri"])
        self.assertEqual(parsed.secret, secret)
        self.assertEqual(parsed.issuer, "Acme")

        still = svc.entities(identity).factors(factor.sid).update(
            auth_payload=wrong(code_at(secret, 0))
        )
        self.assertEqual(still.status, "unverified")
        verified = svc.entities(identity).factors(factor.sid).update(
            auth_payload=code_at(secret, -1)
        )
        self.assertEqual(verified.status, "verified")

        challenge = svc.entities(identity).challenges.create(
            factor_sid=factor.sid, auth_payload=code_at(secret, 0)
        )
        self.assertTrue(challenge.sid.startswith("YC"))
        self.assertEqual(challenge.status, "approved")
        self.assertEqual(challenge.factor_type, "totp")
        self.assertIsNotNone(challenge.date_responded)

        pending = svc.entities(identity).challenges.create(factor_sid=factor.sid)
        self.assertEqual(pending.status, "pending")
        approved = svc.entities(identity).challenges(pending.sid).update(
            auth_payload=code_at(secret, 1)
        )
        self.assertEqual(approved.status, "approved")
        fetched = svc.entities(identity).challenges(pending.sid).fetch()
        self.assertEqual(fetched.status, "approved")

        challenges = svc.entities(identity).challenges.list(status="approved")
        self.assertEqual(len(challenges), 2)
        factors = svc.entities(identity).factors.list()
        self.assertEqual([f.sid for f in factors], [factor.sid])
        self.assertEqual(
            svc.entities(identity).factors(factor.sid).fetch().friendly_name,
            "Alice's phone",
        )
        renamed = svc.entities(identity).factors(factor.sid).update(
            friendly_name="Work phone"
        )
        self.assertEqual(renamed.friendly_name, "Work phone")
        self.assertEqual([e.identity for e in svc.entities.list()], [identity])
        self.assertEqual(svc.entities(identity).fetch().sid, entity.sid)

        self.assertTrue(svc.entities(identity).factors(factor.sid).delete())
        with self.assertRaises(TwilioRestException) as err:
            svc.entities(identity).factors(factor.sid).fetch()
        self.assertEqual((err.exception.status, err.exception.code), (404, 20404))

    def test_passkeys_factor_and_challenge(self):
        # The relying party is the service's own `passkeys` settings (native API).
        native(
            "PATCH",
            f"/v1/services/{self.service.sid}",
            {"passkeys": {"rp_id": "example.com", "origins": ["https://example.com"]}},
        )
        from twilio.rest.verify.v2.service.approve_challenge import ApproveChallengeList
        from twilio.rest.verify.v2.service.new_challenge import NewChallengeList
        from twilio.rest.verify.v2.service.new_factor import NewFactorList
        from twilio.rest.verify.v2.service.new_verify_factor import NewVerifyFactorList

        svc = self.client.verify.v2.services(self.service.sid)
        factor = svc.new_factors.create(
            NewFactorList.CreateNewPasskeysFactorRequest(
                {
                    "friendly_name": "alice@example.com",
                    "identity": "alice-42",
                    "config": {"relying_party": {"id": "example.com"}},
                }
            )
        )
        self.assertRegex(factor.sid, r"^YF[0-9a-f]{32}$")
        self.assertRegex(factor.entity_sid, r"^YE[0-9a-f]{32}$")
        self.assertEqual(
            (factor.identity, factor.status, factor.factor_type, factor.friendly_name),
            ("alice-42", "unverified", "passkeys", "alice@example.com"),
        )
        # WebAuthn creation options, as navigator.credentials.create takes them.
        options = factor.options["publicKey"]
        self.assertEqual(options["rp"]["id"], "example.com")
        self.assertEqual(options["user"]["name"], "alice@example.com")
        self.assertGreaterEqual(len(options["challenge"]), 22)
        self.assertTrue(any(p["alg"] == -7 for p in options["pubKeyCredParams"]))

        # A credential that answers no registration: Twilio's errors, nothing stored.
        client_data = base64.urlsafe_b64encode(
            json.dumps(
                {"type": "webauthn.create", "challenge": "AAAAAAAAAAAAAAAAAAAAAA",
                 "origin": "https://example.com"}
            ).encode()
        ).decode().rstrip("=")
        bogus = {
            "id": "AAAA", "rawId": "AAAA", "authenticatorAttachment": "platform",
            "type": "public-key",
            "response": {"attestationObject": "AAAA", "clientDataJSON": client_data},
        }
        with self.assertRaises(TwilioRestException) as e:
            svc.new_verify_factors.update(NewVerifyFactorList.VerifyPasskeysFactorRequest(bogus))
        self.assertEqual((e.exception.status, e.exception.code), (404, 20404))
        bogus["response"]["clientDataJSON"] = "not-client-data"
        with self.assertRaises(TwilioRestException) as e:
            svc.new_verify_factors.update(NewVerifyFactorList.VerifyPasskeysFactorRequest(bogus))
        self.assertEqual((e.exception.status, e.exception.code), (400, 60200))

        # No verified passkey yet: a challenge for alice finds none; a discoverable one starts.
        with self.assertRaises(TwilioRestException) as e:
            svc.new_challenge().create(
                NewChallengeList.CreatePasskeysChallengeRequest({"identity": "alice-42"})
            )
        self.assertEqual((e.exception.status, e.exception.code), (404, 20404))
        challenge = svc.new_challenge().create(NewChallengeList.CreatePasskeysChallengeRequest({}))
        self.assertRegex(challenge.sid, r"^YC[0-9a-f]{32}$")
        self.assertEqual((challenge.status, challenge.factor_type), ("pending", "passkeys"))
        request = challenge.options["publicKey"]
        self.assertEqual(request["rpId"], "example.com")
        self.assertGreaterEqual(len(request["challenge"]), 22)
        self.assertIsNotNone(challenge.expiration_date)

        # An assertion with that challenge but no such credential: refused (60200), and the
        # challenge is used up (refused afterwards).
        assertion_data = base64.urlsafe_b64encode(
            json.dumps(
                {"type": "webauthn.get", "challenge": request["challenge"],
                 "origin": "https://example.com"}
            ).encode()
        ).decode().rstrip("=")
        assertion = {
            "id": "AAAA", "rawId": "AAAA", "authenticatorAttachment": "platform",
            "type": "public-key",
            "response": {"authenticatorData": "AAAA", "clientDataJSON": assertion_data,
                         "signature": "AAAA"},
        }
        with self.assertRaises(TwilioRestException) as e:
            svc.approve_challenge.update(
                ApproveChallengeList.ApprovePasskeysChallengeRequest(assertion)
            )
        self.assertEqual((e.exception.status, e.exception.code), (400, 60200))
        with self.assertRaises(TwilioRestException) as e:
            svc.approve_challenge.update(
                ApproveChallengeList.ApprovePasskeysChallengeRequest(assertion)
            )
        self.assertEqual(e.exception.status, 400)

        # A service without passkeys settings refuses in Twilio's form.
        other = self.client.verify.v2.services.create(friendly_name="Plain")
        with self.assertRaises(TwilioRestException) as e:
            self.client.verify.v2.services(other.sid).new_factors.create(
                NewFactorList.CreateNewPasskeysFactorRequest(
                    {"friendly_name": "bob", "identity": "bob-1"}
                )
            )
        self.assertEqual((e.exception.status, e.exception.code), (400, 60200))

    def test_imported_secret_and_entity_delete(self):
        svc = self.client.verify.v2.services(self.service.sid)
        secret = pyotp.random_base32()
        factor = svc.entities("migrated-user").new_factors.create(
            friendly_name="Authy",
            factor_type="totp",
            binding_secret=secret,
            config_code_length=8,
            config_alg="sha256",
            config_skew=2,
        )
        self.assertEqual(factor.binding["secret"], secret)
        self.assertEqual(factor.config["alg"], "sha256")
        totp = pyotp.TOTP(secret, digits=8, digest="sha256")
        verified = svc.entities("migrated-user").factors(factor.sid).update(
            auth_payload=totp.now()
        )
        self.assertEqual(verified.status, "verified")
        self.assertTrue(svc.entities("migrated-user").delete())
        with self.assertRaises(TwilioRestException) as err:
            svc.entities("migrated-user").fetch()
        self.assertEqual(err.exception.code, 20404)

    def test_push_factors_and_lockout_are_twilio_errors(self):
        svc = self.client.verify.v2.services(self.service.sid)
        with self.assertRaises(TwilioRestException) as err:
            svc.entities("user-push").new_factors.create(
                friendly_name="phone",
                factor_type="push",
                binding_alg="ES256",
                binding_public_key="MFkw",
                config_app_id="com.example.app",
                config_notification_platform="fcm",
                config_notification_token="t" * 32,
                config_sdk_version="1.0",
            )
        self.assertEqual((err.exception.status, err.exception.code), (400, 60204))

        factor = svc.entities("user-lock").new_factors.create(
            friendly_name="phone", factor_type="totp", config_skew=2
        )
        secret = factor.binding["secret"]
        svc.entities("user-lock").factors(factor.sid).update(
            auth_payload=code_at(secret, -1)
        )
        near = {code_at(secret, k) for k in range(-4, 5)}
        bad = wrong(code_at(secret, 0))
        while bad in near:
            bad = wrong(bad)
        for _ in range(5):
            c = svc.entities("user-lock").challenges.create(
                factor_sid=factor.sid, auth_payload=bad
            )
            self.assertEqual(c.status, "pending")
        with self.assertRaises(TwilioRestException) as err:
            svc.entities("user-lock").challenges.create(
                factor_sid=factor.sid, auth_payload=code_at(secret, 0)
            )
        self.assertEqual((err.exception.status, err.exception.code), (429, 60308))

    def test_webhooks_receive_factor_events_signed_for_the_request_validator(self):
        receiver = Receiver()
        self.addCleanup(receiver.close)
        url = receiver.url("/verify/events?tenant=7")
        svc = self.client.verify.v2.services(self.service.sid)
        hook = svc.webhooks.create(
            friendly_name="factor events",
            event_types=["factor.created", "factor.verified", "challenge.approved"],
            webhook_url=url,
        )
        self.assertRegex(hook.sid, r"^YW[0-9a-f]{32}$")
        self.assertEqual(hook.service_sid, self.service.sid)
        self.assertEqual(hook.status, "enabled")
        self.assertEqual(hook.version, "v2")
        self.assertEqual(hook.webhook_method, "POST")
        self.assertEqual(hook.webhook_url, url)
        self.assertEqual(
            hook.event_types, ["factor.created", "factor.verified", "challenge.approved"]
        )
        quiet = svc.webhooks.create(
            friendly_name="off", event_types=["*"], webhook_url=url, status="disabled"
        )
        self.assertEqual(quiet.status, "disabled")
        self.assertEqual(
            sorted(w.sid for w in svc.webhooks.list()), sorted([hook.sid, quiet.sid])
        )
        self.assertEqual(svc.webhooks(hook.sid).fetch().friendly_name, "factor events")
        # The native API never shows the webhooks (nor their sealed signing keys).
        self.assertNotIn("factor_webhooks", native("GET", f"/v1/services/{self.service.sid}"))

        # A factor's life: created, verified, a challenge approved; each posted once.
        identity = "webhook-user-0001"
        factor = svc.entities(identity).new_factors.create(
            friendly_name="Alice's phone", factor_type="totp"
        )
        secret = factor.binding["secret"]
        svc.entities(identity).factors(factor.sid).update(auth_payload=code_at(secret, 0))
        challenge = svc.entities(identity).challenges.create(
            factor_sid=factor.sid, auth_payload=code_at(secret, 1)
        )
        self.assertEqual(challenge.status, "approved")
        # Sent by concurrent senders: in any order.
        got = receiver.wait_for(3)
        by_type = {form["type"]: form for _, _, _, form in got}
        self.assertEqual(
            sorted(by_type), ["challenge.approved", "factor.created", "factor.verified"]
        )
        validator = RequestValidator(API_KEY)
        for path, signature, token, form in got:
            self.assertEqual(path, "/verify/events?tenant=7")
            self.assertTrue(validator.validate(url, form, signature), form)
            self.assertFalse(RequestValidator("another-token").validate(url, form, signature))
            self.assertTrue(token)
            self.assertEqual(form["service_sid"], self.service.sid)
            self.assertEqual(form["entity_identity"], identity)
            self.assertEqual(form["factor_sid"], factor.sid)
            self.assertEqual(form["factor_type"], "totp")
            self.assertEqual(form["factor_friendly_name"], "Alice's phone")
            self.assertRegex(form["uuid"], r"^[0-9a-f]{8}-[0-9a-f]{4}-")
            self.assertTrue(form["account_sid"].startswith("AC"))
        self.assertEqual(by_type["challenge.approved"]["challenge_sid"], challenge.sid)
        self.assertEqual(len({token for _, _, token, _ in got}), 3)

        # Updated by another admin key: that key signs from now on; only deletions now.
        made = native("POST", "/v1/keys", {"name": "webhooks", "role": "admin"})
        other = client(made["key"])
        updated = other.verify.v2.services(self.service.sid).webhooks(hook.sid).update(
            event_types=["factor.deleted"]
        )
        self.assertEqual(updated.event_types, ["factor.deleted"])
        svc.entities(identity).factors(factor.sid).delete()
        got = receiver.wait_for(4)
        self.assertEqual(len(got), 4)
        _, signature, _, form = got[3]
        self.assertEqual(form["type"], "factor.deleted")
        self.assertNotIn("factor_friendly_name", form)
        self.assertTrue(RequestValidator(made["key"]).validate(url, form, signature))
        self.assertFalse(validator.validate(url, form, signature))

        # Refusals in Twilio's form; a deleted webhook is gone.
        with self.assertRaises(TwilioRestException) as e:
            svc.webhooks.create(friendly_name="x", event_types=["factor.exploded"], webhook_url=url)
        self.assertEqual((e.exception.status, e.exception.code), (400, 60200))
        with self.assertRaises(TwilioRestException) as e:
            svc.webhooks(hook.sid).update(status="paused")
        self.assertEqual((e.exception.status, e.exception.code), (400, 60200))
        self.assertTrue(svc.webhooks(hook.sid).delete())
        with self.assertRaises(TwilioRestException) as e:
            svc.webhooks(hook.sid).fetch()
        self.assertEqual((e.exception.status, e.exception.code), (404, 20404))


if __name__ == "__main__":
    unittest.main(verbosity=2)
