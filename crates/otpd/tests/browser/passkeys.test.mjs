// Passkeys end to end in Debian's chromium with its virtual authenticator (the DevTools
// protocol's WebAuthn domain), driven by playwright-core. Started by
// crates/otpd/tests/e2e_passkeys.rs with OTPD_URL, OTPD_KEY and OTPD_SERVICE (and
// CHROMIUM, default /usr/bin/chromium).
//
// This script plays the integrator: a small backend on http://localhost:<port> serves the
// sign-in page and relays its ceremonies to otpd with the API key, which never reaches the
// page. A second copy of it on another port is "another site": the browser runs the
// ceremony there too (same RP id, `localhost`), and otpd must refuse its origin.
// Prints one line per check; exits non-zero on the first failure.
import { chromium } from "playwright-core";
import { createServer } from "node:http";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { check } from "./browser.mjs";

const otpd = process.env.OTPD_URL;
const key = process.env.OTPD_KEY;
const service = process.env.OTPD_SERVICE;

/** A call to otpd, server-side: { status, body }. */
async function api(method, path, body) {
  const r = await fetch(otpd + path, {
    method,
    headers: { authorization: "Bearer " + key, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

/** A call to otpd's Twilio-compatible face (`/v2`, HTTP Basic as Twilio's SDKs send it). */
async function twilio(path, body) {
  const r = await fetch(otpd + "/v2/Services/" + service + path, {
    method: "POST",
    headers: {
      authorization: "Basic " + Buffer.from("ACotpd:" + key).toString("base64"),
      "content-type": "application/json",
    },
    body: JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

// The page: its script asks its own backend for options, runs the browser's ceremony, and
// hands the credential back. Nothing in it knows otpd or a key.
const page_html = `<!doctype html><meta charset="utf-8"><title>Sign in</title>
<script>
async function post(path, body) {
  const r = await fetch(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  return { status: r.status, body: await r.json() };
}
window.register = async (entity, user_name) => {
  const start = await post("/register/start", { entity, user_name });
  if (start.status !== 201) return { step: "start", ...start };
  const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(start.body.options);
  let credential;
  try { credential = (await navigator.credentials.create({ publicKey })).toJSON(); }
  catch (e) { return { step: "browser", error: String(e) }; }
  const finish = await post("/register/finish", { id: start.body.id, credential });
  return { ...finish, id: start.body.id, credential, options: start.body.options };
};
window.signIn = async (entity) => {
  const start = await post("/login/start", entity ? { entity } : {});
  if (start.status !== 201) return { step: "start", ...start };
  const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(start.body.options);
  let credential;
  try { credential = (await navigator.credentials.get({ publicKey })).toJSON(); }
  catch (e) { return { step: "browser", error: String(e) }; }
  const finish = await post("/login/finish", { id: start.body.id, credential });
  return { ...finish, id: start.body.id, credential, options: start.body.options };
};
// The same ceremonies through Twilio's Passkeys operations (options under publicKey).
window.registerV2 = async (identity, friendly_name) => {
  const start = await post("/v2/register/start", { identity, friendly_name });
  if (start.status !== 201) return { step: "start", ...start };
  const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(start.body.options.publicKey);
  let credential;
  try { credential = (await navigator.credentials.create({ publicKey })).toJSON(); }
  catch (e) { return { step: "browser", error: String(e) }; }
  const finish = await post("/v2/register/finish", credential);
  return { ...finish, started: start.body, credential };
};
window.signInV2 = async (identity) => {
  const start = await post("/v2/login/start", identity ? { identity } : {});
  if (start.status !== 201) return { step: "start", ...start };
  const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(start.body.options.publicKey);
  let credential;
  try { credential = (await navigator.credentials.get({ publicKey })).toJSON(); }
  catch (e) { return { step: "browser", error: String(e) }; }
  const finish = await post("/v2/login/finish", credential);
  return { ...finish, started: start.body, credential };
};
</script><h1>Sign in</h1>`;

/** The integrator's backend: the page, and four relays to otpd. */
function backend() {
  const relay = {
    "/register/start": (b) => api("POST", "/v1/passkeys/registrations", { service, entity: b.entity, user_name: b.user_name }),
    "/register/finish": (b) => api("POST", `/v1/passkeys/registrations/${b.id}/verify`, { credential: b.credential }),
    "/login/start": (b) => api("POST", "/v1/passkeys/authentications", { service, ...(b.entity ? { entity: b.entity } : {}) }),
    "/login/finish": (b) => api("POST", `/v1/passkeys/authentications/${b.id}/verify`, { credential: b.credential }),
    "/v2/register/start": (b) => twilio("/Passkeys/Factors", b),
    "/v2/register/finish": (b) => twilio("/Passkeys/VerifyFactor", b),
    "/v2/login/start": (b) => twilio("/Passkeys/Challenges", b),
    "/v2/login/finish": (b) => twilio("/Passkeys/ApproveChallenge", b),
  };
  const server = createServer(async (req, res) => {
    if (req.method === "GET" && req.url === "/") {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
      return res.end(page_html);
    }
    const handler = req.method === "POST" && relay[req.url];
    if (!handler) { res.writeHead(404); return res.end(); }
    let raw = "";
    for await (const chunk of req) raw += chunk;
    const reply = await handler(JSON.parse(raw));
    res.writeHead(reply.status, { "content-type": "application/json" });
    res.end(JSON.stringify(reply.body));
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

const app = await backend();
const other = await backend();
const appOrigin = `http://localhost:${app.address().port}`;
const otherOrigin = `http://localhost:${other.address().port}`;

// The service's relying party: `localhost`, the app's origin only.
const created = await api("POST", "/v1/services", {
  name: service,
  passkeys: { rp_id: "localhost", rp_name: "otpd e2e", origins: [appOrigin] },
});
check(created.status === 201 && created.body.passkeys.origins[0] === appOrigin,
  "the service names its relying party: " + JSON.stringify(created.body.passkeys));

const profile = mkdtempSync(join(tmpdir(), "otpd-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--host-resolver-rules=MAP localhost 127.0.0.1"],
});
try {
  const page = context.pages()[0] || await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(appOrigin + "/");

  // A platform authenticator that holds discoverable credentials and verifies its user.
  const cdp = await context.newCDPSession(page);
  await cdp.send("WebAuthn.enable", { enableUI: false });
  const { authenticatorId } = await cdp.send("WebAuthn.addVirtualAuthenticator", {
    options: {
      protocol: "ctap2", ctap2Version: "ctap2_1", transport: "internal",
      hasResidentKey: true, hasUserVerification: true, isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  });

  // Registration.
  const reg = await page.evaluate(() => window.register("user-42", "alice@example.com"));
  check(reg.status === 201 && /^pk_/.test(reg.body.factor.id) && reg.body.factor.entity === "user-42"
    && reg.body.factor.status === "active", "a passkey is registered: " + JSON.stringify(reg.body || reg));
  check(reg.options.rp.id === "localhost" && reg.options.rp.name === "otpd e2e"
    && reg.options.authenticatorSelection.userVerification === "required",
    "the creation options name the relying party and require user verification");
  const factor = reg.body.factor.id;
  const stored = await cdp.send("WebAuthn.getCredentials", { authenticatorId });
  check(stored.credentials.length === 1 && stored.credentials[0].isResidentCredential,
    "the authenticator holds one discoverable credential");
  const again = await api("POST", `/v1/passkeys/registrations/${reg.id}/verify`, { credential: reg.credential });
  check(again.status === 400 && again.body.code === "invalid_request", "a registration is finished once: " + again.body.detail);

  // Sign-in with a user name, then without one (discoverable).
  const named = await page.evaluate(() => window.signIn("user-42"));
  check(named.status === 200 && named.body.valid === true && named.body.entity === "user-42" && named.body.factor === factor,
    "sign-in with a user name: " + JSON.stringify(named.body || named));
  check(named.options.allowCredentials.length === 1, "the request options allow the entity's passkey");
  const discoverable = await page.evaluate(() => window.signIn(null));
  check(discoverable.status === 200 && discoverable.body.valid === true && discoverable.body.entity === "user-42"
    && discoverable.body.factor === factor, "sign-in without a user name finds the entity: " + JSON.stringify(discoverable.body || discoverable));
  check((discoverable.options.allowCredentials || []).length === 0, "the discoverable request allows any passkey");
  const replay = await api("POST", `/v1/passkeys/authentications/${discoverable.id}/verify`, { credential: discoverable.credential });
  check(replay.status === 400 && replay.body.code === "invalid_request", "a sign-in is finished once: " + replay.body.detail);
  const fresh = await api("POST", "/v1/passkeys/authentications", { service, entity: "user-42" });
  const stale = await api("POST", `/v1/passkeys/authentications/${fresh.body.id}/verify`, { credential: named.credential });
  check(stale.status === 200 && stale.body.valid === false, "an old assertion does not answer a new challenge");

  // A signature counter that goes back (a cloned authenticator) is refused.
  const [cred] = (await cdp.send("WebAuthn.getCredentials", { authenticatorId })).credentials;
  check(cred.signCount >= 2, `the authenticator counts its signatures (${cred.signCount})`);
  await cdp.send("WebAuthn.removeCredential", { authenticatorId, credentialId: cred.credentialId });
  await cdp.send("WebAuthn.addCredential", { authenticatorId, credential: { ...cred, signCount: 0 } });
  const cloned = await page.evaluate(() => window.signIn("user-42"));
  check(cloned.status === 200 && cloned.body.valid === false, "a counter gone back is refused: " + JSON.stringify(cloned.body || cloned));
  await cdp.send("WebAuthn.removeCredential", { authenticatorId, credentialId: cred.credentialId });
  await cdp.send("WebAuthn.addCredential", { authenticatorId, credential: { ...cred, signCount: cred.signCount + 10 } });
  const restored = await page.evaluate(() => window.signIn("user-42"));
  check(restored.body && restored.body.valid === true, "the same passkey with a higher counter signs in again");

  // The same through Twilio's Passkeys operations on /v2: a Factor YF<hex> is the
  // registration and then the passkey (pk_<hex>); a Challenge YC<hex> is the sign-in.
  const regV2 = await page.evaluate(() => window.registerV2("user-44", "carol@example.com"));
  check(regV2.status === 200 && regV2.body.status === "verified" && regV2.body.factor_type === "passkeys"
    && regV2.body.identity === "user-44" && regV2.body.sid === regV2.started.sid
    && /^YF[0-9a-f]{32}$/.test(regV2.body.sid) && regV2.started.status === "unverified",
    "a passkey is registered through /v2 (VerifyFactor): " + JSON.stringify(regV2.body || regV2));
  const listed = await api("GET", `/v1/passkeys/factors?entity=user-44&service=${service}`);
  check(listed.status === 200 && listed.body.factors.length === 1
    && listed.body.factors[0].id === "pk_" + regV2.body.sid.slice(2),
    "the /v2 factor is otpd's passkey, same digits: " + JSON.stringify(listed.body));
  const againV2 = await twilio("/Passkeys/VerifyFactor", regV2.credential);
  check(againV2.status === 400 && againV2.body.code === 60200, "a /v2 registration is verified once: " + JSON.stringify(againV2.body));
  const approved = await page.evaluate(() => window.signInV2("user-44"));
  check(approved.status === 200 && approved.body.status === "approved" && approved.body.identity === "user-44"
    && approved.body.sid === approved.started.sid && /^YC[0-9a-f]{32}$/.test(approved.body.sid)
    && approved.body.factor_sid === regV2.body.sid && approved.started.status === "pending",
    "a /v2 challenge is approved with the passkey (ApproveChallenge): " + JSON.stringify(approved.body || approved));
  const replayV2 = await twilio("/Passkeys/ApproveChallenge", approved.credential);
  check(replayV2.status === 400 && replayV2.body.code === 60200, "a /v2 challenge is approved once: " + JSON.stringify(replayV2.body));
  const otherUser = await page.evaluate(() => window.signInV2("user-42"));
  check(otherUser.status === 200 && otherUser.body.identity === "user-42",
    "user-42's own passkey approves user-42's challenge: " + JSON.stringify(otherUser.body || otherUser));
  // The authenticator forgets user-44's credential, so that the other-site checks below
  // find user-42's alone.
  await cdp.send("WebAuthn.removeCredential", {
    authenticatorId, credentialId: Buffer.from(regV2.credential.rawId, "base64url").toString("base64"),
  });

  // Another site on the same RP id: the browser signs, otpd refuses the origin.
  await page.goto(otherOrigin + "/");
  const foreignSignIn = await page.evaluate(() => window.signIn("user-42"));
  check(foreignSignIn.status === 200 && foreignSignIn.body.valid === false,
    "a sign-in from another origin is refused: " + JSON.stringify(foreignSignIn.body || foreignSignIn));
  check(JSON.parse(Buffer.from(foreignSignIn.credential.response.clientDataJSON, "base64url")).origin === otherOrigin,
    "(the browser did sign it, for " + otherOrigin + ")");
  const foreignDiscoverable = await page.evaluate(() => window.signIn(null));
  check(foreignDiscoverable.status === 200 && foreignDiscoverable.body.valid === false,
    "a discoverable sign-in from another origin is refused");
  const foreignReg = await page.evaluate(() => window.register("user-43", "bob@example.com"));
  check(foreignReg.status === 400 && foreignReg.body.code === "invalid_request",
    "a registration from another origin is refused: " + JSON.stringify(foreignReg.body || foreignReg));
  const bob = await api("GET", `/v1/passkeys/factors?entity=user-43&service=${service}`);
  check(bob.status === 200 && bob.body.factors.length === 0, "and stores nothing");

  check(errors.length === 0, "no script errors: " + errors.join("; "));
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
  app.close();
  other.close();
}
