#!/usr/bin/env node
// Verifies the DKIM signatures of one message with mailauth (npm, by Postal Systems), an
// RFC 6376 implementation independent of otpd's (lettre's) signer.
//
//   node dkim_verify.js SELECTOR DOMAIN "v=DKIM1; k=rsa; p=…" < message.eml
//
// The TXT record is served by a stub resolver for SELECTOR._domainkey.DOMAIN only (no DNS
// query leaves the machine). Prints one JSON line: [{result, domain, selector, algo,
// headers}] for every signature found.
'use strict';

const { dkimVerify } = require('mailauth/lib/dkim/verify');

async function main() {
    const [selector, domain, txt] = process.argv.slice(2);
    if (!selector || !domain || !txt) throw new Error('usage: dkim_verify.js SELECTOR DOMAIN TXT < message');
    const chunks = [];
    for await (const chunk of process.stdin) chunks.push(chunk);
    const message = Buffer.concat(chunks);
    const resolver = async (name, type) => {
        if (type === 'TXT' && name.toLowerCase() === `${selector}._domainkey.${domain}`.toLowerCase()) {
            return [[txt]];
        }
        const e = new Error(`no ${type} record for ${name}`);
        e.code = 'ENOTFOUND';
        throw e;
    };
    const out = await dkimVerify(message, { resolver });
    console.log(JSON.stringify(out.results.map((r) => ({
        result: r.status && r.status.result,
        comment: r.status && r.status.comment,
        domain: r.signingDomain,
        selector: r.selector,
        algo: r.algo,
        headers: r.signingHeaders && r.signingHeaders.keys,
    }))));
}

main().catch((e) => {
    console.error(String(e && e.stack || e));
    process.exit(1);
});
