// Reads otpd's API reference (/docs) and error reference (/docs/errors) in Debian's
// chromium with playwright-core. Started by crates/otpd/tests/e2e_dashboard.rs with
// OTPD_URL (and CHROMIUM, default /usr/bin/chromium). Prints one line per check; exits
// non-zero on the first failure.
import { check, withBrowser } from "./browser.mjs";

const url = process.env.OTPD_URL;

await withBrowser(url, async ({ page, errors, foreign }) => {
  await page.goto(url + "/docs");
  await page.waitForSelector("section.op");
  const shown = await page.evaluate(async () => {
    const ops = [...document.querySelectorAll("section.op")];
    // Every example of the document (each request body's, each response's; the server
    // test proves each operation has them) is on the page.
    const doc = await (await fetch("/openapi.json")).json();
    let examples = 0;
    for (const item of Object.values(doc.paths)) {
      for (const op of Object.values(item)) {
        const contents = [op.requestBody && op.requestBody.content, ...Object.values(op.responses || {}).map((r) => r.content)];
        for (const content of contents) for (const media of Object.values(content || {})) if (media.example !== undefined) examples++;
      }
    }
    return {
      ops: ops.length,
      examples,
      shownExamples: document.querySelectorAll("section.op pre.example").length,
      backticks: document.getElementById("main").innerText.split("\n").filter((l) => l.includes("`")),
      codeSpans: document.querySelectorAll(".desc code, .md code").length,
    };
  });
  check(shown.ops >= 40, `${shown.ops} operations listed`);
  check(shown.examples >= shown.ops && shown.shownExamples === shown.examples,
    `every example of the document is shown (${shown.shownExamples} of ${shown.examples})`);
  check(shown.backticks.length === 0, "markdown is rendered (no literal backticks): " + JSON.stringify(shown.backticks.slice(0, 5)));
  check(shown.codeSpans > 20, `inline code is rendered as code (${shown.codeSpans} spans)`);
  const codeLength = await page.evaluate(() => {
    const row = [...document.querySelectorAll("tr")].find((r) => r.querySelector("td.name code")?.textContent === "code_length");
    return row ? row.textContent : "";
  });
  check(/minimum: 4/.test(codeLength) && /maximum: 10/.test(codeLength), "code_length's schema bounds are 4–10 as its text says: " + codeLength);

  await page.goto(url + "/docs/errors#expired");
  const expired = await page.textContent("#expired");
  check(/410/.test(expired) && /Start a new verification/.test(expired), "the error reference explains `expired`: " + expired.trim().slice(0, 80));
  check(errors.length === 0, "no script errors: " + errors.join("; "));
  check(foreign.length === 0, "nothing loaded from elsewhere: " + foreign.join(", "));
});
