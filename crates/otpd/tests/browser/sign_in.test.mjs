// <otpd-verify> in Debian's chromium, on the example backend (examples/sign-in/server.mjs)
// in front of the real otpd binary with a test key (crates/otpd/tests/e2e_sign_in.rs):
// the whole flow by keyboard only on a 390 px wide phone screen (number → the code read
// from the test key's recorded messages → the `verified` event), errors in plain words,
// WebOTP (the browser API stood in for: Chromium cannot simulate an SMS), the locales,
// "Use a passkey" with Chromium's virtual authenticator, and axe-core's accessibility check
// with no serious or critical violation.
import { readFileSync } from "node:fs";

import { check, withBrowser } from "./browser.mjs";

const OTPD_URL = process.env.OTPD_URL;
const TEST_KEY = process.env.OTPD_TEST_KEY;
const APP_URL = process.env.APP_URL;
const ADMIN_KEY = process.env.OTPD_ADMIN_KEY;
const SERVICE = process.env.OTPD_SERVICE;
const AXE = readFileSync(new URL("./node_modules/axe-core/axe.min.js", import.meta.url), "utf8");

/** The code in the test key's recorded message of verification `id`. */
async function codeOf(id) {
  for (let i = 0; i < 100; i++) {
    const r = await fetch(`${OTPD_URL}/v1/verifications/${id}/messages`, {
      headers: { authorization: `Bearer ${TEST_KEY}` },
    });
    const { messages } = await r.json();
    const m = messages.length && /\b(\d{4,10})\b/.exec(messages[messages.length - 1].body);
    if (m) return m[1];
    await new Promise((res) => setTimeout(res, 50));
  }
  throw new Error(`no message recorded for ${id}`);
}

/** A call to otpd's API with the admin key: `{status, body}`. */
async function otpdPost(path, body) {
  const r = await fetch(OTPD_URL + path, {
    method: "POST",
    headers: { authorization: `Bearer ${ADMIN_KEY}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: r.status, body: await r.json() };
}

/** Records the component's events in `window.__events`. */
const RECORD_EVENTS = () => {
  window.__events = [];
  for (const type of ["started", "verified", "failed"]) {
    document.addEventListener(type, (e) => window.__events.push({ type, detail: e.detail }));
  }
};

async function events(page, type) {
  return page.evaluate((t) => window.__events.filter((e) => e.type === t).map((e) => e.detail), type);
}

async function waitForEvent(page, type, count = 1) {
  await page.waitForFunction(([t, n]) => window.__events.filter((e) => e.type === t).length >= n, [type, count]);
  const all = await events(page, type);
  return all[all.length - 1];
}

/** The focused element inside the component (its id), or the page's. */
async function focused(page) {
  return page.evaluate(() => {
    const host = document.activeElement;
    if (host && host.shadowRoot && host.shadowRoot.activeElement) return host.shadowRoot.activeElement.id;
    return host ? host.tagName.toLowerCase() : null;
  });
}

/** axe-core over the page (the component's shadow DOM included): serious and critical ones. */
async function axeViolations(page) {
  await page.evaluate(AXE);
  const result = await page.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ["violations"] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length }));
  });
  return result.filter((v) => v.impact === "serious" || v.impact === "critical");
}

function component(page) {
  return {
    text: (sel) => page.locator(`otpd-verify >> ${sel}`).innerText(),
    visible: (sel) => page.locator(`otpd-verify >> ${sel}`).isVisible(),
    value: (sel) => page.locator(`otpd-verify >> ${sel}`).inputValue(),
  };
}

await withBrowser(APP_URL, async ({ context, page, errors, foreign }) => {
  await page.setViewportSize({ width: 390, height: 844 });
  await page.addInitScript(RECORD_EVENTS);
  await page.goto(APP_URL);
  await page.waitForFunction(() => customElements.get("otpd-verify") !== undefined);
  const c = component(page);
  check((await page.evaluate(() => window.OtpdVerify.version)) === "1.0.0", "the component says its version");
  check((await page.evaluate(() => typeof window.libphonenumber)) === "undefined", "the bundled phone library stays inside the bundle");
  check(await c.visible("#country") && await c.visible("#phone"), "it asks for a country and a number");
  check((await c.value("#country")) === "GB", "the country attribute preselects the United Kingdom");
  check((await page.locator("otpd-verify >> label[for=phone]").innerText()) === "Phone number", "the number field has its label");

  const violations = await axeViolations(page);
  check(violations.length === 0, `axe: no serious or critical violation on the number step (${JSON.stringify(violations)})`);

  // Keyboard only: Tab reaches the country, then the number; Enter sends.
  await page.keyboard.press("Tab");
  check((await focused(page)) === "country", "Tab focuses the country picker first");
  await page.keyboard.press("Tab");
  check((await focused(page)) === "phone", "then the number");
  await page.keyboard.type("07400 12345");
  await page.keyboard.press("Enter");
  check((await c.text("#phone-error")) === "Enter a valid phone number for the country chosen.", "an invalid number is refused in plain words, before any request");
  check((await page.locator("otpd-verify >> #phone").getAttribute("aria-invalid")) === "true", "and marked invalid for screen readers");
  check((await events(page, "started")).length === 0, "nothing was sent");
  await page.keyboard.type("6");
  check((await c.value("#phone")) === "07400 123456", `the number is formatted as typed (${await c.value("#phone")})`);
  await page.keyboard.press("Enter");
  const started = await waitForEvent(page, "started");
  check(started.to === "+447400123456" && started.id.startsWith("ver_"), `started for ${started.to} through the backend`);
  check((await focused(page)) === "code", "the focus moves to the code field");
  check((await page.locator("otpd-verify >> #code").getAttribute("autocomplete")) === "one-time-code", "the code field asks for one-time-code autofill");
  check((await c.text("#live")).startsWith("We sent a code to +44 7400 123456"), "the sending is announced (role=status)");
  check(/^Send a new code in \d+ s$/.test(await c.text("#resend")) && await page.locator("otpd-verify >> #resend").isDisabled(), "resending waits for its countdown");

  const violations2 = await axeViolations(page);
  check(violations2.length === 0, `axe: no serious or critical violation on the code step (${JSON.stringify(violations2)})`);

  const code = await codeOf(started.id);
  const wrong = code.replace(/\d$/, (d) => String((Number(d) + 1) % 10));
  await page.keyboard.type(wrong);
  await page.keyboard.press("Enter");
  const failed = await waitForEvent(page, "failed");
  check(failed.code === "wrong_code" && failed.remaining_attempts === 4, "a wrong code fires `failed` with the attempts left");
  check((await c.text("#code-error")) === "That code is not right. 4 tries left.", "and says so in plain words");
  // The wrong code is selected: typing replaces it.
  await page.keyboard.type(code);
  await page.keyboard.press("Enter");
  const verified = await waitForEvent(page, "verified");
  check(verified.id === started.id && verified.to === "+447400123456", "the right code fires `verified`");
  check((await page.locator("#result").innerText()) === "Signed in as +447400123456", "the page heard it");
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  check(width <= 390, `nothing overflows a 390 px screen (scroll width ${width})`);
  await page.screenshot({ path: `${process.env.OTPD_SCREENSHOT_DIR || "."}/sign-in-390.png` });

  check(errors.length === 0, `no script errors (${errors.join("; ")})`);
  check(foreign.every((u) => u.startsWith(OTPD_URL + "/sdk/")), `the page reached only its backend and otpd's script (${foreign.join(", ")})`);

  // WebOTP: Chromium cannot simulate an incoming SMS, so the browser's API is stood in for;
  // the component asks for it after sending and checks the code it returns.
  const webotp = await context.newPage();
  await webotp.addInitScript(RECORD_EVENTS);
  await webotp.addInitScript(() => {
    window.OTPCredential = function OTPCredential() {};
    let deliver;
    const arrived = new Promise((res) => { deliver = res; });
    window.__deliverOtp = (code) => deliver({ type: "otp", code });
    const real = navigator.credentials.get.bind(navigator.credentials);
    navigator.credentials.get = (options) => {
      if (options && options.otp) {
        window.__otpAsked = options.otp.transport;
        return arrived;
      }
      return real(options);
    };
  });
  await webotp.goto(APP_URL);
  await webotp.locator("otpd-verify >> #phone").fill("07400 123457");
  await webotp.locator("otpd-verify >> #send").click();
  const again = await waitForEvent(webotp, "started");
  check(JSON.stringify(await webotp.evaluate(() => window.__otpAsked)) === '["sms"]', "after sending it asks the WebOTP API for the SMS code");
  await webotp.evaluate((code) => window.__deliverOtp(code), await codeOf(again.id));
  const auto = await waitForEvent(webotp, "verified");
  check(auto.id === again.id, "the code WebOTP returns is filled in and checked");

  // Localised: French texts, and Arabic right to left.
  const fr = await context.newPage();
  await fr.goto(APP_URL);
  await fr.evaluate(() => document.querySelector("otpd-verify").setAttribute("locale", "fr"));
  check((await fr.locator("otpd-verify >> label[for=phone]").innerText()) === "Numéro de téléphone", "locale=fr speaks French");
  await fr.evaluate(() => document.querySelector("otpd-verify").setAttribute("locale", "ar"));
  check((await fr.evaluate(() => document.querySelector("otpd-verify").getAttribute("dir"))) === "rtl", "locale=ar reads right to left");

  // An error from otpd, in plain words: a landline is refused by the service's rule.
  const land = await context.newPage();
  await land.addInitScript(RECORD_EVENTS);
  await land.goto(APP_URL);
  await land.locator("otpd-verify >> #phone").fill("020 7946 0958");
  await land.locator("otpd-verify >> #send").click();
  const refused = await waitForEvent(land, "failed");
  check(refused.code === "number_type_blocked" && refused.status === 403, `otpd's refusal reaches the page (${JSON.stringify(refused)})`);
  check((await land.locator("otpd-verify >> #phone-error").innerText()).startsWith("Codes cannot be sent to this kind of number"), "and is shown in plain words");

  // "Use a passkey": offered when the page gives passkey routes; a username-less sign-in
  // through the backend, answered by Chromium's virtual authenticator (DevTools' WebAuthn
  // domain). The page is on `localhost`, the service's relying party.
  const pk = await context.newPage();
  await pk.addInitScript(RECORD_EVENTS);
  const pkUrl = APP_URL.replace("127.0.0.1", "localhost");
  await pk.goto(pkUrl);
  const cdp = await context.newCDPSession(pk);
  await cdp.send("WebAuthn.enable", { enableUI: false });
  await cdp.send("WebAuthn.addVirtualAuthenticator", {
    options: {
      protocol: "ctap2", ctap2Version: "ctap2_1", transport: "internal",
      hasResidentKey: true, hasUserVerification: true, isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  });
  // The user enrolled a passkey earlier (the integrator's account page, not this component).
  const reg = await otpdPost("/v1/passkeys/registrations", { service: SERVICE, entity: "user-7", user_name: "user7@example.com" });
  check(reg.status === 201, `a registration starts (${JSON.stringify(reg.body)})`);
  const credential = await pk.evaluate(async (options) => {
    const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(options);
    return (await navigator.credentials.create({ publicKey })).toJSON();
  }, reg.body.options);
  const done = await otpdPost(`/v1/passkeys/registrations/${reg.body.id}/verify`, { credential });
  check(done.status === 201, `the passkey is registered (${JSON.stringify(done.body)})`);
  check(await pk.locator("otpd-verify >> #passkey").isVisible(), "the component offers \"Use a passkey\"");
  await pk.locator("otpd-verify >> #passkey").click();
  const signedIn = await waitForEvent(pk, "verified");
  check(signedIn.passkey === true && signedIn.entity === "user-7" && /^pk_/.test(signedIn.factor),
    `a passkey sign-in fires \`verified\` for the entity (${JSON.stringify(signedIn)})`);
  check((await pk.locator("#result").innerText()) === "Signed in as user-7", "the page heard it");
  // Without a passkey in the browser the sign-in does not happen, and says so.
  await cdp.send("WebAuthn.disable");
  const bare = await context.newPage();
  await bare.addInitScript(RECORD_EVENTS);
  await bare.addInitScript(() => {
    navigator.credentials.get = () => Promise.reject(new DOMException("The operation either timed out or was not allowed.", "NotAllowedError"));
  });
  await bare.goto(pkUrl);
  await bare.locator("otpd-verify >> #passkey").click();
  const cancelled = await waitForEvent(bare, "failed");
  check(cancelled.code === "passkey_cancelled", "a dismissed passkey prompt fires `failed`");
  check((await bare.locator("otpd-verify >> #phone-error").innerText()) === "The passkey was not used. Try again, or use a code.", "and says so in plain words");
});
