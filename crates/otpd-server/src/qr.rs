//! QR codes of `otpauth://` URIs for enrolling authenticator apps: SVG for the creation
//! reply (embeddable in a page as is) and PNG for clients that want an image.

use qrcode::render::svg;
use qrcode::{Color, EcLevel, QrCode};

/// Smallest rendered side of the SVG, in pixels.
const SVG_MIN_SIZE: u32 = 256;
/// Pixels per module in the PNG (phone cameras read 8 px modules from a screen easily).
const PNG_MODULE_PX: usize = 8;
/// Light modules around the symbol, as the QR specification requires.
const QUIET_ZONE: usize = 4;

/// Why a QR code could not be made.
#[derive(Debug, thiserror::Error)]
#[error("the URI does not fit in a QR code")]
pub struct QrError;

fn encode(data: &str) -> Result<QrCode, QrError> {
    // Level M (15 % recovery) keeps a 64-byte SHA512 secret's URI at a readable size.
    QrCode::with_error_correction_level(data.as_bytes(), EcLevel::M).map_err(|_| QrError)
}

/// The QR code of `data` as an SVG document (no XML declaration, so it can be inlined).
pub fn svg(data: &str) -> Result<String, QrError> {
    let code = encode(data)?;
    let doc = code
        .render::<svg::Color<'_>>()
        .min_dimensions(SVG_MIN_SIZE, SVG_MIN_SIZE)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .quiet_zone(true)
        .build();
    Ok(match doc.find("<svg") {
        Some(start) => doc[start..].to_string(),
        None => doc,
    })
}

/// The QR code of `data` as an 8-bit grayscale PNG.
pub fn png(data: &str) -> Result<Vec<u8>, QrError> {
    let code = encode(data)?;
    let modules = code.width();
    let colors = code.to_colors();
    let side_modules = modules + 2 * QUIET_ZONE;
    let side = side_modules * PNG_MODULE_PX;
    let mut pixels = vec![0xffu8; side * side];
    for (i, color) in colors.iter().enumerate() {
        if *color != Color::Dark {
            continue;
        }
        let (mx, my) = (i % modules + QUIET_ZONE, i / modules + QUIET_ZONE);
        for y in my * PNG_MODULE_PX..(my + 1) * PNG_MODULE_PX {
            let row = y * side;
            pixels[row + mx * PNG_MODULE_PX..row + (mx + 1) * PNG_MODULE_PX].fill(0);
        }
    }
    let side = u32::try_from(side).map_err(|_| QrError)?;
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, side, side);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|_| QrError)?;
    writer.write_image_data(&pixels).map_err(|_| QrError)?;
    writer.finish().map_err(|_| QrError)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_and_png_are_well_formed() {
        let uri = "otpauth://totp/Acme:alice?secret=JBSWY3DPEHPK3PXP&issuer=Acme";
        let s = svg(uri).unwrap();
        assert!(
            s.starts_with("<svg") && s.trim_end().ends_with("</svg>"),
            "{s}"
        );
        let p = png(uri).unwrap();
        assert_eq!(&p[..8], b"\x89PNG\r\n\x1a\n");
        // A 64-byte secret's URI still fits.
        let long = format!("otpauth://totp/Acme:alice?secret={}", "A".repeat(103));
        assert!(svg(&long).is_ok() && png(&long).is_ok());
    }
}
