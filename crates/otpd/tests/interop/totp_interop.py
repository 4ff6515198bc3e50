#!/usr/bin/env python3
"""Independent view of an otpd authenticator factor, for crates/otpd/tests/e2e_totp.rs.

Reads one JSON request on stdin:
  {"uri": "otpauth://…", "times": [unix seconds…], "counters": [n…],
   "qr_svg": "<svg…>" | null, "qr_png_path": "/tmp/…png" | null}
and prints one JSON reply on stdout:
  {"parsed": {type, secret, issuer, name, digits, algorithm, period | counter},
   "codes_at_times": {"<t>": code}, "codes_at_counters": {"<n>": code},
   "qr_svg_text": decoded text | null, "qr_png_text": decoded text | null}

The URI is parsed by pyotp (not by otpd), the codes come from pyotp, and QR codes are
rasterized with resvg and decoded with zxing-cpp, so every value is produced
independently of otpd's own implementation.

`--check` only imports the packages (exit 0 when they are all there).
"""

import io
import json
import sys


def decode_qr(png_bytes):
    import zxingcpp
    from PIL import Image

    image = Image.open(io.BytesIO(png_bytes)).convert("L")
    found = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)
    return found[0].text if found else None


def main():
    import pyotp

    if "--check" in sys.argv:
        import resvg_py  # noqa: F401
        import zxingcpp  # noqa: F401
        from PIL import Image  # noqa: F401

        from importlib.metadata import version

        names = ["pyotp", "resvg-py", "zxing-cpp", "pillow"]
        print("interop packages: " + ", ".join(f"{n} {version(n)}" for n in names))
        return

    req = json.load(sys.stdin)
    otp = pyotp.parse_uri(req["uri"])
    parsed = {
        "secret": otp.secret,
        "issuer": otp.issuer,
        "name": otp.name,
        "digits": otp.digits,
        "algorithm": otp.digest().name.upper(),
    }
    reply = {"codes_at_times": {}, "codes_at_counters": {}}
    if isinstance(otp, pyotp.TOTP):
        parsed["type"] = "totp"
        parsed["period"] = otp.interval
        for t in req.get("times", []):
            reply["codes_at_times"][str(t)] = otp.at(t)
    else:
        parsed["type"] = "hotp"
        parsed["counter"] = otp.initial_count
        for n in req.get("counters", []):
            reply["codes_at_counters"][str(n)] = otp.at(n)
    reply["parsed"] = parsed

    reply["qr_svg_text"] = None
    if req.get("qr_svg"):
        import resvg_py

        png = bytes(resvg_py.svg_to_bytes(svg_string=req["qr_svg"], zoom=2.0))
        reply["qr_svg_text"] = decode_qr(png)
    reply["qr_png_text"] = None
    if req.get("qr_png_path"):
        with open(req["qr_png_path"], "rb") as f:
            reply["qr_png_text"] = decode_qr(f.read())

    print(json.dumps(reply))


if __name__ == "__main__":
    main()
