"""A real SMTP server (aiosmtpd, from PyPI) for otpd's email delivery test.

Usage: smtp_server.py PORT USER PASSWORD [MODE CERT KEY]
Listens on 127.0.0.1:PORT, requires AUTH (PLAIN/LOGIN) with USER/PASSWORD, prints
"READY" once it accepts connections, then one JSON line per message received:
{"auth_user", "mail_from", "rcpt_tos", "data", "tls"}. Ends when stdin closes.

MODE is "none" (plain text, the default), "starttls" (STARTTLS required before MAIL and
AUTH) or "tls" (implicit TLS from the first byte), with the server certificate chain CERT
and its key KEY (PEM files); "tls" in the output is the negotiated TLS version or null.
"""

import json
import ssl
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Recorder:
    async def handle_DATA(self, server, session, envelope):
        print(
            json.dumps(
                {
                    "auth_user": session.auth_data.login.decode()
                    if isinstance(session.auth_data, LoginPassword)
                    else None,
                    "mail_from": envelope.mail_from,
                    "rcpt_tos": envelope.rcpt_tos,
                    "data": envelope.content.decode("utf-8", "replace"),
                    "tls": tls_version(server),
                }
            ),
            flush=True,
        )
        return "250 OK queued"


def tls_version(server):
    ssl_object = server.transport.get_extra_info("ssl_object")
    return ssl_object.version() if ssl_object is not None else None


def main():
    port, user, password = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3].encode()
    mode = sys.argv[4] if len(sys.argv) > 4 else "none"
    context = None
    if mode != "none":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(sys.argv[5], sys.argv[6])
    tls_options = {
        "none": {"auth_require_tls": False},
        # AUTH only after STARTTLS, and no mail without it.
        "starttls": {"tls_context": context, "require_starttls": True, "auth_require_tls": True},
        # The whole connection is TLS (aiosmtpd counts only STARTTLS as TLS for AUTH).
        "tls": {"ssl_context": context, "auth_require_tls": False},
    }[mode]

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == user
            and auth_data.password == password
        )
        return AuthResult(success=ok, auth_data=auth_data)

    controller = Controller(
        Recorder(),
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticator,
        auth_required=True,
        **tls_options,
    )
    controller.start()
    print("READY", flush=True)
    try:
        sys.stdin.read()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
