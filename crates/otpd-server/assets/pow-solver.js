/*
 * otpd proof-of-work solver (served at /v1/challenges/solver.js).
 *
 * Finds a nonce such that SHA-256("<challenge>:<nonce>") starts with `difficulty` zero
 * bits, using the platform's Web Crypto (browsers, workers, Node 20+). Your backend gets
 * {challenge, difficulty} from POST /v1/challenges, your page runs
 *
 *     const nonce = await otpdSolve(challenge, difficulty);
 *
 * and your backend sends {"proof_of_work": {"challenge", "nonce"}} with the verification.
 * Options: {batch: hashes in flight at once (default 256), onProgress(triedSoFar),
 * signal: an AbortSignal}.
 */
(function (root) {
  "use strict";

  function leadingZeroBits(bytes) {
    var bits = 0;
    for (var i = 0; i < bytes.length; i++) {
      var b = bytes[i];
      if (b === 0) {
        bits += 8;
        continue;
      }
      while ((b & 0x80) === 0) {
        bits += 1;
        b <<= 1;
      }
      return bits;
    }
    return bits;
  }

  async function otpdSolve(challenge, difficulty, options) {
    var opts = options || {};
    var subtle = root.crypto && root.crypto.subtle;
    if (!subtle) throw new Error("otpdSolve needs Web Crypto (crypto.subtle)");
    if (typeof challenge !== "string" || !(difficulty >= 0 && difficulty <= 256)) {
      throw new Error("otpdSolve(challenge: string, difficulty: number)");
    }
    var batch = opts.batch || 256;
    var encoder = new TextEncoder();
    var prefix = challenge + ":";
    for (var start = 0; start < Number.MAX_SAFE_INTEGER; start += batch) {
      if (opts.signal && opts.signal.aborted) throw new Error("otpdSolve aborted");
      var work = [];
      for (var n = start; n < start + batch; n++) {
        work.push(subtle.digest("SHA-256", encoder.encode(prefix + n)));
      }
      var hashes = await Promise.all(work);
      for (var i = 0; i < hashes.length; i++) {
        if (leadingZeroBits(new Uint8Array(hashes[i])) >= difficulty) {
          return String(start + i);
        }
      }
      if (opts.onProgress) opts.onProgress(start + batch);
    }
    throw new Error("otpdSolve: no nonce found");
  }

  root.otpdSolve = otpdSolve;
  if (typeof module === "object" && module.exports) module.exports = otpdSolve;
})(typeof globalThis !== "undefined" ? globalThis : this);
