// The official `twilio` package from npm, pointed at a real otpd by its Verify base URL.
//
// Started by crates/otpd/tests/e2e_twilio_sdk.rs (`node --test`), which runs otpd with the
// HTTP sink provider and passes OTPD_BASE_URL, OTPD_API_KEY (an admin key: the SDK's auth
// token slot) and OTPD_SINK_URL (GET lists the messages otpd delivered).
//
// Only the SDK's public surface is used: `twilio(accountSid, authToken)`, then
// `client.verify.baseUrl = ...` — the one-line change docs/twilio-migration.md shows. (The Node SDK
// insists that the account SID starts with "AC"; otpd does not check it.)

import assert from "node:assert/strict";
import http from "node:http";
import { after, before, describe, it } from "node:test";

import twilio from "twilio";

const BASE_URL = process.env.OTPD_BASE_URL;
const API_KEY = process.env.OTPD_API_KEY;
const SINK_URL = process.env.OTPD_SINK_URL;

function makeClient() {
  const client = twilio("ACotpd", API_KEY);
  client.verify.baseUrl = BASE_URL;
  return client;
}

async function codeFor(to, count = 1, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const messages = (await (await fetch(SINK_URL)).json()).filter((m) => m.to === to);
    if (messages.length >= count) {
      const match = /code is (\d+)/.exec(messages[count - 1].body);
      assert.ok(match, `no code in ${messages[count - 1].body}`);
      return match[1];
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no message to ${to} within ${timeoutMs} ms`);
}

const wrong = (code) => [...code].map((d) => String((Number(d) + 1) % 10)).join("");

async function rejectsWith(promise, code, status) {
  await assert.rejects(promise, (err) => {
    assert.equal(err.code, code, `expected code ${code}, got ${err.code}: ${err.message}`);
    if (status) assert.equal(err.status, status);
    return true;
  });
}

describe("twilio (npm) against otpd", () => {
  const client = makeClient();
  let service;
  const verify = () => client.verify.v2.services(service.sid);

  before(async () => {
    service = await client.verify.v2.services.create({ friendlyName: "Node Shop", codeLength: 6 });
  });

  it("creates and fetches a service", async () => {
    assert.match(service.sid, /^VA[0-9a-f]{32}$/);
    assert.equal(service.friendlyName, "Node Shop");
    const fetched = await verify().fetch();
    assert.equal(fetched.sid, service.sid);
    assert.ok(fetched.dateCreated instanceof Date);
  });

  it("sends, rejects a wrong code, approves the right one, fetches, and 20404s a spent code", async () => {
    const to = "+14155550301";
    const v = await verify().verifications.create({ to, channel: "sms" });
    assert.equal(v.status, "pending");
    assert.match(v.sid, /^VE/);
    assert.equal(v.sendCodeAttempts.length, 1);
    const code = await codeFor(to);

    const bad = await verify().verificationChecks.create({ to, code: wrong(code) });
    assert.equal(bad.status, "pending");
    assert.equal(bad.valid, false);
    const good = await verify().verificationChecks.create({ to, code });
    assert.equal(good.status, "approved");
    assert.equal(good.valid, true);

    const fetched = await verify().verifications(v.sid).fetch();
    assert.equal(fetched.status, "approved");
    await rejectsWith(verify().verificationChecks.create({ to, code }), 20404, 404);
  });

  it("cancels, after which a check is 20404", async () => {
    const to = "+14155550302";
    const v = await verify().verifications.create({ to, channel: "sms" });
    const code = await codeFor(to);
    const canceled = await verify().verifications(v.sid).update({ status: "canceled" });
    assert.equal(canceled.status, "canceled");
    await rejectsWith(verify().verificationChecks.create({ verificationSid: v.sid, code }), 20404);
  });

  it("raises 60202 after too many checks", async () => {
    const to = "+14155550303";
    await verify().verifications.create({ to, channel: "sms" });
    const bad = wrong(await codeFor(to));
    for (let i = 0; i < 4; i++) {
      assert.equal((await verify().verificationChecks.create({ to, code: bad })).status, "pending");
    }
    await rejectsWith(verify().verificationChecks.create({ to, code: bad }), 60202, 429);
  });

  it("raises 60200 for what otpd does not offer", async () => {
    await rejectsWith(verify().verifications.create({ to: "+14155550304", channel: "sna" }), 60200, 400);
  });

  it("lists, updates and deletes services; lists attempts", async () => {
    const extra = await client.verify.v2.services.create({ friendlyName: "Node Temp" });
    const sids = (await client.verify.v2.services.list({ pageSize: 1 })).map((s) => s.sid);
    assert.ok(sids.includes(service.sid) && sids.includes(extra.sid));
    const updated = await client.verify.v2.services(extra.sid).update({ codeLength: 8 });
    assert.equal(updated.codeLength, 8);
    assert.equal(await client.verify.v2.services(extra.sid).remove(), true);
    await rejectsWith(client.verify.v2.services(extra.sid).fetch(), 20404);

    const to = "+14155550305";
    const v = await verify().verifications.create({ to, channel: "call" });
    assert.equal(v.channel, "call");
    const attempts = await client.verify.v2.verificationAttempts.list({ verificationSid: v.sid });
    assert.equal(attempts.length, 1);
    assert.match(attempts[0].sid, /^VL/);
  });

  it("checks with both to and verificationSid; refuses changes of finished verifications", async () => {
    const a = "+14155550311";
    const b = "+14155550312";
    const va = await verify().verifications.create({ to: a, channel: "sms" });
    const vb = await verify().verifications.create({ to: b, channel: "sms" });
    const code = await codeFor(a);
    await rejectsWith(verify().verificationChecks.create({ to: a, verificationSid: vb.sid, code }), 20404, 404);
    const good = await verify().verificationChecks.create({ to: a, verificationSid: va.sid, code });
    assert.equal(good.status, "approved");
    await rejectsWith(verify().verifications(va.sid).update({ status: "approved" }), 20404, 404);
  });

  it("adds, fetches and removes safe-list numbers", async () => {
    const phoneNumber = "+14155550313";
    const added = await client.verify.v2.safelist.create({ phoneNumber });
    assert.match(added.sid, /^GN[0-9a-f]{32}$/);
    assert.equal(added.phoneNumber, phoneNumber);
    assert.equal((await client.verify.v2.safelist(phoneNumber).fetch()).sid, added.sid);
    assert.equal(await client.verify.v2.safelist(phoneNumber).remove(), true);
    await rejectsWith(client.verify.v2.safelist(phoneNumber).fetch(), 20404, 404);
  });

  it("summarizes attempts, filters on rbm, lists and chooses templates", async () => {
    await verify().verifications.create({ to: "+14155550314", channel: "sms" });
    const summary = await client.verify.v2.verificationAttemptsSummary().fetch({ verifyServiceSid: service.sid });
    assert.ok(summary.totalAttempts >= 1);
    assert.equal(summary.totalAttempts, summary.totalConverted + summary.totalUnconverted);
    const rbm = await client.verify.v2.verificationAttemptsSummary().fetch({ channel: "rbm" });
    assert.equal(rbm.totalAttempts, 0);
    assert.deepEqual(await client.verify.v2.verificationAttempts.list({ channel: "rbm" }), []);
    const templates = await client.verify.v2.templates.list();
    assert.equal(templates.length, 2);
    assert.ok(templates.every((t) => /^HJ/.test(t.sid)));
    const v = await verify().verifications.create({ to: "+14155550315", channel: "sms", templateSid: templates[0].sid });
    assert.equal(v.status, "pending");
    await rejectsWith(
      verify().verifications.create({ to: "+14155550315", channel: "sms", templateSid: "HJ00000000000000000000000000000000" }),
      60228,
      400,
    );
  });

  describe("status callbacks", () => {
    const received = [];
    let server;
    let url;

    before(async () => {
      server = http.createServer((req, res) => {
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
      url = `http://127.0.0.1:${server.address().port}/otp/status`;
    });

    after(() => server.close());

    it("are signed so that twilio.validateRequest accepts them", async () => {
      const svc = await client.verify.v2.services.create({ friendlyName: "Node Callbacks" });
      // OtpdStatusCallback is otpd's extension parameter, sent with the SDK's own client.
      const reply = await client.request({
        method: "post",
        uri: `${BASE_URL}/v2/Services/${svc.sid}`,
        data: { OtpdStatusCallback: url },
        headers: { "Content-Type": "application/x-www-form-urlencoded" },
      });
      assert.equal(reply.statusCode, 200, JSON.stringify(reply.body));
      const to = "+14155550306";
      await client.verify.v2.services(svc.sid).verifications.create({ to, channel: "sms" });
      await client.verify.v2.services(svc.sid).verificationChecks.create({ to, code: await codeFor(to) });
      const deadline = Date.now() + 10_000;
      while (received.length < 2 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.deepEqual(received.map((r) => r.params.Status).sort(), ["approved", "pending"]);
      for (const { signature, params } of received) {
        assert.equal(twilio.validateRequest(API_KEY, signature, url, params), true);
        assert.equal(twilio.validateRequest("another-token", signature, url, params), false);
      }
    });
  });
});
