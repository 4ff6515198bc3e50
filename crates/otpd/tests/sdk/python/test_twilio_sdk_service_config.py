"""Service Rate Limits (with Buckets) and Messaging Configurations through the official
`twilio` package from PyPI, against a real otpd.

Started by crates/otpd/tests/e2e_twilio_sdk.rs like test_twilio_sdk.py (same environment:
OTPD_BASE_URL, OTPD_API_KEY, OTPD_SINK_URL). Only the SDK's public surface is used.
"""

import os
import unittest

from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

BASE_URL = os.environ["OTPD_BASE_URL"]
API_KEY = os.environ["OTPD_API_KEY"]

MG_GB = "MG9752274e9e519418a7406176694466fa"
MG_ALL = "MG0123456789abcdef0123456789abcdef"


def client():
    c = Client("otpd", API_KEY)
    c.verify.base_url = BASE_URL
    return c


class ServiceConfigurationThroughTheSdk(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.client = client()
        cls.service = cls.client.verify.v2.services.create(friendly_name="Limits Shop")

    def verify(self):
        return self.client.verify.v2.services(self.service.sid)

    def test_rate_limits_and_buckets_are_managed_and_enforced(self):
        limit = self.verify().rate_limits.create(
            unique_name="end_user_session", description="Per session"
        )
        self.assertTrue(limit.sid.startswith("RK") and len(limit.sid) == 34)
        self.assertEqual(limit.service_sid, self.service.sid)
        self.assertEqual(limit.unique_name, "end_user_session")
        self.assertEqual(limit.description, "Per session")
        self.assertTrue(limit.url.startswith(BASE_URL))
        self.assertTrue(limit.links["buckets"].endswith("/Buckets"))

        # A taken name is a conflict; the list and fetch show it.
        with self.assertRaises(TwilioRestException) as caught:
            self.verify().rate_limits.create(unique_name="end_user_session")
        self.assertEqual(caught.exception.status, 409)
        listed = self.verify().rate_limits.list()
        self.assertEqual([l.sid for l in listed], [limit.sid])
        self.assertEqual(self.verify().rate_limits(limit.sid).fetch().unique_name, "end_user_session")
        updated = self.verify().rate_limits(limit.sid).update(description="Per browser session")
        self.assertEqual(updated.description, "Per browser session")

        bucket = self.verify().rate_limits(limit.sid).buckets.create(max=2, interval=60)
        self.assertTrue(bucket.sid.startswith("BL") and len(bucket.sid) == 34)
        self.assertEqual((bucket.max, bucket.interval), (2, 60))
        self.assertEqual(bucket.rate_limit_sid, limit.sid)
        bucket = self.verify().rate_limits(limit.sid).buckets(bucket.sid).update(max=1)
        self.assertEqual((bucket.max, bucket.interval), (1, 60))
        self.assertEqual(
            [b.sid for b in self.verify().rate_limits(limit.sid).buckets.list()], [bucket.sid]
        )
        with self.assertRaises(TwilioRestException) as caught:
            self.verify().rate_limits(limit.sid).buckets.create(max=0, interval=60)
        self.assertEqual(caught.exception.code, 60200)

        # Enforced per key: one send per minute for session s1, s2 is apart.
        sends = self.verify().verifications
        sends.create(to="+14155550301", channel="sms", rate_limits={"end_user_session": "s1"})
        with self.assertRaises(TwilioRestException) as caught:
            sends.create(to="+14155550302", channel="sms", rate_limits={"end_user_session": "s1"})
        self.assertEqual(caught.exception.status, 429)
        sends.create(to="+14155550303", channel="sms", rate_limits={"end_user_session": "s2"})
        # A limit the service does not have is refused, not ignored.
        with self.assertRaises(TwilioRestException) as caught:
            sends.create(to="+14155550304", channel="sms", rate_limits={"nope": "s1"})
        self.assertEqual(caught.exception.code, 60200)

        # Deleting the bucket lifts the limit; deleting the limit removes it.
        self.assertTrue(self.verify().rate_limits(limit.sid).buckets(bucket.sid).delete())
        sends.create(to="+14155550305", channel="sms", rate_limits={"end_user_session": "s1"})
        self.assertTrue(self.verify().rate_limits(limit.sid).delete())
        with self.assertRaises(TwilioRestException) as caught:
            self.verify().rate_limits(limit.sid).fetch()
        self.assertEqual(caught.exception.code, 20404)

    def test_messaging_configurations_are_managed_per_country(self):
        gb = self.verify().messaging_configurations.create(
            country="GB", messaging_service_sid=MG_GB
        )
        self.assertEqual(gb.country, "GB")
        self.assertEqual(gb.messaging_service_sid, MG_GB)
        self.assertEqual(gb.service_sid, self.service.sid)
        self.assertTrue(gb.url.endswith("/MessagingConfigurations/GB"))
        self.verify().messaging_configurations.create(country="all", messaging_service_sid=MG_ALL)
        with self.assertRaises(TwilioRestException) as caught:
            self.verify().messaging_configurations.create(country="GB", messaging_service_sid=MG_ALL)
        self.assertEqual(caught.exception.status, 409)
        with self.assertRaises(TwilioRestException) as caught:
            self.verify().messaging_configurations.create(country="FR", messaging_service_sid="MG1")
        self.assertEqual(caught.exception.code, 60200)

        countries = sorted(c.country for c in self.verify().messaging_configurations.list())
        self.assertEqual(countries, ["GB", "all"])
        fetched = self.verify().messaging_configurations("GB").fetch()
        self.assertEqual(fetched.messaging_service_sid, MG_GB)
        changed = self.verify().messaging_configurations("GB").update(messaging_service_sid=MG_ALL)
        self.assertEqual(changed.messaging_service_sid, MG_ALL)
        self.assertTrue(self.verify().messaging_configurations("GB").delete())
        with self.assertRaises(TwilioRestException) as caught:
            self.verify().messaging_configurations("GB").fetch()
        self.assertEqual(caught.exception.code, 20404)


if __name__ == "__main__":
    unittest.main(verbosity=2)
