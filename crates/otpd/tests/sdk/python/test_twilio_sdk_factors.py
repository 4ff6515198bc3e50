"""The official `twilio` package from PyPI against otpd's authenticator-app API (Entities,
Factors, Challenges under /v2), with codes from pyotp, an independent TOTP implementation.

Started by crates/otpd/tests/e2e_twilio_sdk.rs like test_twilio_sdk.py (OTPD_BASE_URL,
OTPD_API_KEY). Only the SDK's public surface is used.
"""

import os
import time
import unittest

import pyotp
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

BASE_URL = os.environ["OTPD_BASE_URL"]
API_KEY = os.environ["OTPD_API_KEY"]


def client():
    c = Client("otpd", API_KEY)
    c.verify.base_url = BASE_URL
    return c


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


if __name__ == "__main__":
    unittest.main(verbosity=2)
