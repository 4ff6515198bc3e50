#!/usr/bin/env node
// A local SMSC for otpd's SMPP tests and benchmark: the server of the npm package `smpp`
// (node-smpp), configured here. The protocol work (PDU framing, decoding, encoding,
// sessions) is the package's; this script only decides the answers.
//
//   node smsc.js --port PORT --system-id ID --password PW --log FILE
//                [--fail-to NUMBER]...        a failure receipt (stat:UNDELIV) for NUMBER
//                [--reject NUMBER=STATUS]...  answer submit_sm for NUMBER with STATUS (e.g. 0x0B)
//                [--no-receipts]              send no delivery receipts (throughput bench)
//                [--no-log]                   record nothing (throughput bench)
//                [--hex-ids]                  submit_sm_resp ids as 8 hex digits, receipts with
//                                             their decimal reading (as many SMSCs do)
//                [--fail-later-segments]      stat:UNDELIV for segments 2.. of a long message
//                [--tls CERT KEY]             smpps: TLS from the first byte
//
// Binds: bind_transceiver, or bind_transmitter plus bind_receiver (receipts then go to
// the receiver session).
//
// It checks bind credentials (ESME_RINVSYSID / ESME_RINVPASWD otherwise), answers each
// submit_sm with a fresh message id, appends one JSON line per received PDU to FILE
// (command, sequence number, and for submit_sm: addresses, data_coding, esm_class,
// registered_delivery, short_message as hex, its UDH as hex (length octet included),
// the text without the UDH as the package decoded it), and sends a deliver_sm delivery receipt (esm_class 0x04, the standard
// receipt text, receipted_message_id and message_state TLVs) for every message that asked
// for one. Prints "READY <port>" once listening, and a line per bind.
'use strict';

const fs = require('fs');
const smpp = require('smpp');

function parseArgs(argv) {
    const args = { failTo: new Set(), reject: new Map(), receipts: true, log: null };
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        const next = () => {
            if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
            return argv[++i];
        };
        switch (a) {
            case '--port': args.port = Number(next()); break;
            case '--system-id': args.systemId = next(); break;
            case '--password': args.password = next(); break;
            case '--log': args.log = next(); break;
            case '--fail-to': args.failTo.add(next()); break;
            case '--reject': {
                const [number, status] = next().split('=');
                args.reject.set(number, Number(status));
                break;
            }
            case '--no-receipts': args.receipts = false; break;
            case '--hex-ids': args.hexIds = true; break;
            case '--fail-later-segments': args.failLater = true; break;
            case '--tls': args.tls = { cert: fs.readFileSync(next()), key: fs.readFileSync(next()) }; break;
            case '--no-log': args.log = null; args.noLog = true; break;
            default: throw new Error(`unknown argument ${a}`);
        }
    }
    if (!Number.isInteger(args.port) || !args.systemId || args.password === undefined) {
        throw new Error('usage: smsc.js --port PORT --system-id ID --password PW --log FILE');
    }
    if (!args.log && !args.noLog) throw new Error('--log FILE or --no-log is required');
    return args;
}

const args = parseArgs(process.argv.slice(2));
const log = args.log ? fs.openSync(args.log, 'a') : null;
function record(entry) {
    if (log !== null) fs.writeSync(log, JSON.stringify(entry) + '\n');
}

// The package decodes short_message into {udh, message}; keep the bytes as they came too,
// so tests can check the encoding themselves.
const decodeFilters = smpp.PDU.prototype._filter;
smpp.PDU.prototype._filter = function (func) {
    if (func === 'decode' && Buffer.isBuffer(this.short_message)) {
        this.short_message_raw = Buffer.from(this.short_message);
    }
    return decodeFilters.call(this, func);
};

// Message ids unique across restarts of this peer (a restarted SMSC must not reuse ids).
const idPrefix = Date.now().toString(36);
let counter = 0;
const hexBase = Math.floor(Math.random() * 0x7fffffff);
const nextId = () => args.hexIds
    ? (hexBase + ++counter).toString(16).toUpperCase().padStart(8, '0')
    : `${idPrefix}${(++counter).toString(36)}`;
// The id a receipt names: the decimal reading of a hex id with --hex-ids.
const receiptId = (id) => args.hexIds ? String(parseInt(id, 16)) : id;
// Sessions bound as receivers get the receipts of every session's messages.
const receivers = new Set();

// SMPP absolute date of the receipt text: YYMMDDhhmm.
function receiptDate(d) {
    const p = (n) => String(n).padStart(2, '0');
    return `${p(d.getUTCFullYear() % 100)}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}${p(d.getUTCHours())}${p(d.getUTCMinutes())}`;
}

function sendReceipt(session, pdu, submittedId, text, submitted) {
    const id = receiptId(submittedId);
    const raw = pdu.short_message_raw || Buffer.alloc(0);
    const laterSegment = (pdu.esm_class & 0x40) && raw.length > 5 && raw[5] > 1;
    const failed = args.failTo.has(pdu.destination_addr) || (args.failLater && laterSegment);
    if (receivers.size > 0) session = receivers.values().next().value;
    const stat = failed ? 'UNDELIV' : 'DELIVRD';
    const now = receiptDate(new Date());
    const body = `id:${id} sub:001 dlvrd:${failed ? '000' : '001'} submit date:${receiptDate(submitted)} ` +
        `done date:${now} stat:${stat} err:${failed ? '001' : '000'} text:${text.slice(0, 20)}`;
    session.deliver_sm({
        source_addr_ton: pdu.dest_addr_ton,
        source_addr_npi: pdu.dest_addr_npi,
        source_addr: pdu.destination_addr,
        dest_addr_ton: pdu.source_addr_ton,
        dest_addr_npi: pdu.source_addr_npi,
        destination_addr: pdu.source_addr,
        esm_class: smpp.ESM_CLASS.MC_DELIVERY_RECEIPT,
        short_message: body,
        receipted_message_id: id,
        message_state: failed ? smpp.MESSAGE_STATE.UNDELIVERABLE : smpp.MESSAGE_STATE.DELIVERED,
    }, (resp) => record({ command: 'deliver_sm_resp', command_status: resp.command_status, receipted_message_id: id, stat }));
}

function onSubmit(session, pdu) {
    const sm = pdu.short_message || {};
    const raw = pdu.short_message_raw || Buffer.alloc(0);
    // The UDH as sent: its length octet and information elements.
    const udh = (pdu.esm_class & 0x40) && raw.length ? raw.subarray(0, raw[0] + 1) : null;
    const text = typeof sm.message === 'string' ? sm.message : '';
    const status = args.reject.get(pdu.destination_addr);
    const id = status ? null : nextId();
    record({
        command: 'submit_sm',
        sequence_number: pdu.sequence_number,
        message_id: id,
        command_status: status || 0,
        service_type: pdu.service_type,
        source_addr_ton: pdu.source_addr_ton,
        source_addr_npi: pdu.source_addr_npi,
        source_addr: pdu.source_addr,
        dest_addr_ton: pdu.dest_addr_ton,
        dest_addr_npi: pdu.dest_addr_npi,
        destination_addr: pdu.destination_addr,
        esm_class: pdu.esm_class,
        registered_delivery: pdu.registered_delivery,
        data_coding: pdu.data_coding,
        short_message_hex: raw.toString('hex'),
        udh_hex: udh ? udh.toString('hex') : null,
        text,
    });
    if (status) {
        session.send(pdu.response({ command_status: status }));
        return;
    }
    session.send(pdu.response({ message_id: id }));
    if (args.receipts && (pdu.registered_delivery & 0x03) !== 0) {
        const submitted = new Date();
        setImmediate(() => sendReceipt(session, pdu, id, text, submitted));
    }
}

// Commands recorded by their own handler below (the others are recorded as they come).
const HANDLED = new Set(['bind_transceiver', 'bind_transmitter', 'bind_receiver', 'submit_sm']);

const server = smpp.createServer(args.tls ? { key: args.tls.key, cert: args.tls.cert } : {}, (session) => {
    let bound = false;
    // Small PDUs both ways: send each at once (no Nagle delay), as an SMSC would.
    session.socket.setNoDelay(true);
    session.on('error', (e) => record({ command: 'session_error', error: String(e) }));
    session.on('pdu', (pdu) => {
        if (!HANDLED.has(pdu.command)) record({ command: pdu.command, sequence_number: pdu.sequence_number });
    });
    const onBind = (kind) => (pdu) => {
        let status = 0;
        if (pdu.system_id !== args.systemId) status = smpp.ESME_RINVSYSID;
        else if (pdu.password !== args.password) status = smpp.ESME_RINVPASWD;
        record({ command: kind, system_id: pdu.system_id, system_type: pdu.system_type, interface_version: pdu.interface_version, command_status: status, tls: Boolean(args.tls) });
        if (status) {
            session.send(pdu.response({ command_status: status }));
            session.close();
            return;
        }
        // A receiver gets receipts only; a transmitter submits only.
        bound = kind !== 'bind_receiver';
        if (kind === 'bind_receiver') {
            receivers.add(session);
            session.on('close', () => receivers.delete(session));
        }
        console.log(`BOUND ${pdu.system_id}`);
        session.send(pdu.response({ system_id: 'otpd-test-smsc' }));
    };
    for (const kind of ['bind_transceiver', 'bind_transmitter', 'bind_receiver']) session.on(kind, onBind(kind));
    session.on('submit_sm', (pdu) => {
        if (!bound) {
            session.send(pdu.response({ command_status: smpp.ESME_RINVBNDSTS }));
            return;
        }
        onSubmit(session, pdu);
    });
    session.on('enquire_link', (pdu) => session.send(pdu.response()));
    session.on('unbind', (pdu) => {
        session.send(pdu.response());
        session.close();
    });
});

server.listen(args.port, '127.0.0.1', () => {
    console.log(`READY ${server.address().port}`);
});
process.on('SIGTERM', () => process.exit(0));
