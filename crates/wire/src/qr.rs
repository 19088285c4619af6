//! The QR code of a payment approval link, as a PNG (what the person's phone scans).

use std::io::Cursor;

use image::{ImageFormat, Luma};
use qrcode::QrCode;

/// An SVG QR code of `text` (dark modules on white, scalable); `None` when it is too long to
/// encode.
pub fn svg(text: &str) -> Option<String> {
    let code = QrCode::new(text.as_bytes()).ok()?;
    Some(
        code.render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(200, 200)
            .build(),
    )
}

/// A PNG QR code of `text` (at least 240 × 240 pixels); `None` when it is too long to encode.
pub fn png(text: &str) -> Option<Vec<u8>> {
    let code = QrCode::new(text.as_bytes()).ok()?;
    let image = code.render::<Luma<u8>>().min_dimensions(240, 240).build();
    let mut png = Cursor::new(Vec::new());
    image.write_to(&mut png, ImageFormat::Png).ok()?;
    Some(png.into_inner())
}

#[cfg(test)]
mod tests {
    #[test]
    fn qr_codes_are_png() {
        let png = super::png("http://127.0.0.1:8080/sim/wsim/m/device?code=WSIM-ABCDEF").unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    }
}
