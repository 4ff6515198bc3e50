// Builds otpd-verify.js for npm from the same parts otpd serves at /sdk/otpd-verify.js
// (crates/otpd-server/src/sdk.rs): the bundle head, libphonenumber-js, the middle, the
// component, the tail.
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const assets = join(here, "../../crates/otpd-server/assets");
const parts = [
  "sdk/bundle-head.js",
  "vendor/libphonenumber-js/libphonenumber-min.js",
  "sdk/bundle-middle.js",
  "sdk/otpd-verify.js",
  "sdk/bundle-tail.js",
];
const bundle = parts.map((p) => readFileSync(join(assets, p), "utf8")).join("");
writeFileSync(join(here, "otpd-verify.js"), bundle);
console.log(`otpd-verify.js: ${bundle.length} bytes`);
