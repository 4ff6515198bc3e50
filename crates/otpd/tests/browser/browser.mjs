// What the browser tests share: Debian's chromium (never a downloaded browser) launched by
// playwright-core in a throw-away profile, a check that prints one line (and throws on a
// failure), and the page's script errors and requests to anywhere but otpd collected.
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Prints "ok - what", or throws "FAILED: what". */
export function check(ok, what) {
  if (!ok) throw new Error("FAILED: " + what);
  console.log("ok - " + what);
}

/**
 * Runs `test({ context, page, errors, foreign })` in a fresh headless chromium; `errors`
 * collects the page's script errors, `foreign` every request that did not go to `url`.
 */
export async function withBrowser(url, test) {
  const profile = mkdtempSync(join(tmpdir(), "otpd-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      // `localhost` pages (a WebAuthn relying party cannot be an IP address) reach the
      // servers listening on 127.0.0.1.
      "--host-resolver-rules=MAP localhost 127.0.0.1"],
    viewport: { width: 1280, height: 1000 },
  });
  const foreign = [];
  context.on("request", (r) => { if (!r.url().startsWith(url)) foreign.push(r.url()); });
  try {
    const page = context.pages()[0] || await context.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await test({ context, page, errors, foreign });
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
}
