// Service Rate Limits (with Buckets) and Messaging Configurations through the official
// `twilio` package from npm, against a real otpd. Started by
// crates/otpd/tests/e2e_twilio_sdk.rs like twilio_sdk.test.mjs (same environment).

import assert from "node:assert/strict";
import { before, describe, it } from "node:test";

import twilio from "twilio";

const BASE_URL = process.env.OTPD_BASE_URL;
const API_KEY = process.env.OTPD_API_KEY;
const MG = "MG9752274e9e519418a7406176694466fa";

function makeClient() {
  const client = twilio("ACotpd", API_KEY);
  client.verify.baseUrl = BASE_URL;
  return client;
}

describe("service configuration through the Node SDK", () => {
  let verify;
  before(async () => {
    const client = makeClient();
    const service = await client.verify.v2.services.create({ friendlyName: "Node Limits" });
    verify = client.verify.v2.services(service.sid);
  });

  it("manages and enforces rate limits with buckets", async () => {
    const limit = await verify.rateLimits.create({ uniqueName: "ip", description: "Per IP" });
    assert.match(limit.sid, /^RK[0-9a-f]{32}$/);
    assert.equal(limit.uniqueName, "ip");
    const bucket = await verify.rateLimits(limit.sid).buckets.create({ max: 1, interval: 600 });
    assert.match(bucket.sid, /^BL[0-9a-f]{32}$/);
    assert.equal(bucket.max, 1);
    assert.equal(bucket.interval, 600);
    const buckets = await verify.rateLimits(limit.sid).buckets.list();
    assert.deepEqual(buckets.map((b) => b.sid), [bucket.sid]);

    await verify.verifications.create({ to: "+14155550311", channel: "sms", rateLimits: { ip: "192.0.2.1" } });
    await assert.rejects(
      verify.verifications.create({ to: "+14155550312", channel: "sms", rateLimits: { ip: "192.0.2.1" } }),
      (e) => e.status === 429,
    );
    await verify.verifications.create({ to: "+14155550313", channel: "sms", rateLimits: { ip: "192.0.2.2" } });

    assert.equal(await verify.rateLimits(limit.sid).remove(), true);
    await assert.rejects(verify.rateLimits(limit.sid).fetch(), (e) => e.code === 20404);
  });

  it("manages messaging configurations per country", async () => {
    const config = await verify.messagingConfigurations.create({ country: "US", messagingServiceSid: MG });
    assert.equal(config.country, "US");
    assert.equal(config.messagingServiceSid, MG);
    const listed = await verify.messagingConfigurations.list();
    assert.deepEqual(listed.map((c) => c.country), ["US"]);
    const fetched = await verify.messagingConfigurations("US").fetch();
    assert.equal(fetched.messagingServiceSid, MG);
    assert.equal(await verify.messagingConfigurations("US").remove(), true);
    await assert.rejects(verify.messagingConfigurations("US").fetch(), (e) => e.code === 20404);
  });
});
