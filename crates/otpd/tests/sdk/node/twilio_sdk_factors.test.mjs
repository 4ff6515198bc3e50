// The official `twilio` package from npm against otpd's authenticator-app API (Entities,
// Factors, Challenges under /v2), with codes computed here (RFC 6238 over node:crypto).
//
// Started by crates/otpd/tests/e2e_twilio_sdk.rs like twilio_sdk.test.mjs (OTPD_BASE_URL,
// OTPD_API_KEY). Only the SDK's public surface is used.

import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import http from "node:http";
import { describe, it } from "node:test";

import twilio from "twilio";

const BASE_URL = process.env.OTPD_BASE_URL;
const API_KEY = process.env.OTPD_API_KEY;

function makeClient() {
  const client = twilio("ACotpd", API_KEY);
  client.verify.baseUrl = BASE_URL;
  return client;
}

function base32Decode(text) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = 0;
  let value = 0;
  const out = [];
  for (const ch of text.replace(/=+$/, "").toUpperCase()) {
    value = (value << 5) | alphabet.indexOf(ch);
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

// The code an app shows `offsetSteps` steps from now (RFC 6238, SHA-1, 6 digits, 30 s).
function codeAt(secret, offsetSteps) {
  const step = Math.floor(Date.now() / 1000 / 30) + offsetSteps;
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = createHmac("sha1", base32Decode(secret)).update(counter).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const n = (mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000;
  return String(n).padStart(6, "0");
}

const wrong = (code) => [...code].map((d) => String((Number(d) + 5) % 10)).join("");

describe("twilio-node against otpd's Entities, Factors and Challenges", () => {
  it("creates, verifies and challenges a TOTP factor", async () => {
    const client = makeClient();
    const service = await client.verify.v2.services.create({ friendlyName: "Acme" });
    const svc = client.verify.v2.services(service.sid);
    const identity = "node-user-0001";
    const entity = await svc.entities.create({ identity });
    assert.match(entity.sid, /^YE[0-9a-f]{32}$/);

    const factor = await svc.entities(identity).newFactors.create({
      friendlyName: "Alice's phone",
      factorType: "totp",
      configSkew: 2,
    });
    assert.match(factor.sid, /^YF[0-9a-f]{32}$/);
    assert.equal(factor.status, "unverified");
    const secret = factor.binding.secret;
    assert.ok(factor.binding.uri.startsWith("otpauth://totp/Acme:"));

    const verified = await svc
      .entities(identity)
      .factors(factor.sid)
      .update({ authPayload: codeAt(secret, -1) });
    assert.equal(verified.status, "verified");

    const challenge = await svc
      .entities(identity)
      .challenges.create({ factorSid: factor.sid, authPayload: codeAt(secret, 0) });
    assert.match(challenge.sid, /^YC[0-9a-f]{32}$/);
    assert.equal(challenge.status, "approved");

    const pending = await svc.entities(identity).challenges.create({ factorSid: factor.sid });
    assert.equal(pending.status, "pending");
    const still = await svc
      .entities(identity)
      .challenges(pending.sid)
      .update({ authPayload: wrong(codeAt(secret, 1)) });
    assert.equal(still.status, "pending");
    const approved = await svc
      .entities(identity)
      .challenges(pending.sid)
      .update({ authPayload: codeAt(secret, 1) });
    assert.equal(approved.status, "approved");

    const listed = await svc.entities(identity).challenges.list();
    assert.equal(listed.length, 2);
    const factors = await svc.entities(identity).factors.list();
    assert.deepEqual(
      factors.map((f) => f.sid),
      [factor.sid],
    );
    assert.equal((await svc.entities(identity).fetch()).sid, entity.sid);

    assert.equal(await svc.entities(identity).factors(factor.sid).remove(), true);
    await assert.rejects(svc.entities(identity).factors(factor.sid).fetch(), (err) => {
      assert.equal(err.code, 20404);
      assert.equal(err.status, 404);
      return true;
    });
  });

  it("answers push factors with Twilio's not-supported error", async () => {
    const client = makeClient();
    const service = await client.verify.v2.services.create({ friendlyName: "Acme" });
    await assert.rejects(
      client.verify.v2
        .services(service.sid)
        .entities("node-user-0002")
        .newFactors.create({ friendlyName: "phone", factorType: "push" }),
      (err) => {
        assert.equal(err.code, 60204);
        assert.equal(err.status, 400);
        return true;
      },
    );
  });

  it("manages webhooks whose factor events twilio.validateRequest accepts", async () => {
    const received = [];
    const server = http.createServer((req, res) => {
      let body = "";
      req.on("data", (chunk) => (body += chunk));
      req.on("end", () => {
        received.push({
          signature: req.headers["x-twilio-signature"],
          params: Object.fromEntries(new URLSearchParams(body)),
        });
        res.writeHead(204).end();
      });
    });
    await new Promise((r) => server.listen(0, "127.0.0.1", r));
    try {
      const url = `http://127.0.0.1:${server.address().port}/hooks/verify`;
      const client = makeClient();
      const service = await client.verify.v2.services.create({ friendlyName: "Acme" });
      const svc = client.verify.v2.services(service.sid);
      const hook = await svc.webhooks.create({
        friendlyName: "all factor events",
        eventTypes: ["*"],
        webhookUrl: url,
      });
      assert.match(hook.sid, /^YW[0-9a-f]{32}$/);
      assert.deepEqual(hook.eventTypes, ["*"]);
      assert.equal(hook.webhookMethod, "POST");
      assert.deepEqual(
        (await svc.webhooks.list()).map((w) => w.sid),
        [hook.sid],
      );
      const renamed = await svc.webhooks(hook.sid).update({
        friendlyName: "renamed",
        versionParam: "v1",
      });
      assert.equal(renamed.friendlyName, "renamed");
      assert.equal(renamed.version, "v1");
      assert.equal((await svc.webhooks(hook.sid).fetch()).friendlyName, "renamed");

      const identity = "node-webhook-user";
      const factor = await svc.entities(identity).newFactors.create({
        friendlyName: "phone",
        factorType: "totp",
      });
      const deadline = Date.now() + 15_000;
      while (received.length < 1 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.equal(received.length, 1);
      const { signature, params } = received[0];
      assert.equal(params.type, "factor.created");
      assert.equal(params.factor_sid, factor.sid);
      assert.equal(params.entity_identity, identity);
      assert.equal(twilio.validateRequest(API_KEY, signature, url, params), true);
      assert.equal(twilio.validateRequest("another-token", signature, url, params), false);

      assert.equal(await svc.webhooks(hook.sid).remove(), true);
      await assert.rejects(svc.webhooks(hook.sid).fetch(), (err) => {
        assert.equal(err.code, 20404);
        return true;
      });
    } finally {
      server.close();
    }
  });
});
