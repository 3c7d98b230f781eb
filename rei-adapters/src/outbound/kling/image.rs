//! Checks an image→video input before anything is sent (providers.md §1.6): JPEG or PNG
//! (by content, not by the declared type), at most 10 MB, both sides at least 300 px,
//! aspect ratio between 1:2.5 and 2.5:1.

/// Largest accepted image, in bytes.
pub(crate) const MAX_IMAGE_BYTES: usize = 10 * 1024 * 1024;
/// Smallest accepted side, in pixels.
pub(crate) const MIN_SIDE: u32 = 300;

/// The image formats Kling accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ImageFormat {
    Jpeg,
    Png,
}

/// Returns why the image cannot be sent, if it cannot.
pub(crate) fn check(bytes: &[u8]) -> Result<ImageFormat, String> {
    if bytes.len() > MAX_IMAGE_BYTES {
        return Err(format!(
            "the image is {} bytes; Kling accepts at most {MAX_IMAGE_BYTES}",
            bytes.len()
        ));
    }
    let (format, size) = if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        (ImageFormat::Png, png_size(bytes))
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        (ImageFormat::Jpeg, jpeg_size(bytes))
    } else {
        return Err("the image must be a JPEG or PNG".to_owned());
    };
    let (width, height) = size.ok_or_else(|| "the image size cannot be read".to_owned())?;
    if width < MIN_SIDE || height < MIN_SIDE {
        return Err(format!(
            "the image is {width}×{height} px; both sides must be at least {MIN_SIDE} px"
        ));
    }
    let (w, h) = (u64::from(width), u64::from(height));
    if 2 * w > 5 * h || 2 * h > 5 * w {
        return Err(format!(
            "the image is {width}×{height} px; the aspect ratio must be between 1:2.5 and 2.5:1"
        ));
    }
    Ok(format)
}

/// Width and height from the IHDR chunk.
fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
    if bytes.get(12..16)? != b"IHDR" {
        return None;
    }
    let width = u32::from_be_bytes(bytes.get(16..20)?.try_into().ok()?);
    let height = u32::from_be_bytes(bytes.get(20..24)?.try_into().ok()?);
    Some((width, height))
}

/// Width and height from the first SOFn segment.
fn jpeg_size(bytes: &[u8]) -> Option<(u32, u32)> {
    let mut at = 2;
    loop {
        if *bytes.get(at)? != 0xFF {
            return None;
        }
        while *bytes.get(at)? == 0xFF {
            at += 1;
        }
        let marker = *bytes.get(at)?;
        at += 1;
        // Markers without a length: TEM, RST0–7 (SOI/EOI never precede a frame header).
        if marker == 0x01 || (0xD0..=0xD7).contains(&marker) {
            continue;
        }
        let length = usize::from(u16::from_be_bytes([*bytes.get(at)?, *bytes.get(at + 1)?]));
        let is_frame = (0xC0..=0xCF).contains(&marker) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
        if is_frame {
            let height = u16::from_be_bytes([*bytes.get(at + 3)?, *bytes.get(at + 4)?]);
            let width = u16::from_be_bytes([*bytes.get(at + 5)?, *bytes.get(at + 6)?]);
            return Some((u32::from(width), u32::from(height)));
        }
        if length < 2 {
            return None;
        }
        at += length;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A PNG header claiming `width`×`height` (enough for the check).
    pub(crate) fn png(width: u32, height: u32) -> Vec<u8> {
        let mut b = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
        b.extend_from_slice(&width.to_be_bytes());
        b.extend_from_slice(&height.to_be_bytes());
        b.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
        b
    }

    /// A JPEG with an APP0 segment then a baseline SOF0 frame of `width`×`height`.
    pub(crate) fn jpeg(width: u16, height: u16) -> Vec<u8> {
        let mut b = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10];
        b.extend_from_slice(b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0");
        b.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x11, 0x08]);
        b.extend_from_slice(&height.to_be_bytes());
        b.extend_from_slice(&width.to_be_bytes());
        b.extend_from_slice(&[3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1, 0xFF, 0xD9]);
        b
    }

    #[test]
    fn jpeg_and_png_of_a_fair_size_pass() {
        assert_eq!(check(&png(1024, 768)), Ok(ImageFormat::Png));
        assert_eq!(check(&jpeg(720, 1280)), Ok(ImageFormat::Jpeg));
        assert_eq!(check(&jpeg(300, 750)), Ok(ImageFormat::Jpeg));
    }

    #[test]
    fn other_formats_small_or_odd_images_fail() {
        assert!(check(b"GIF89a....").is_err());
        assert!(check(b"RIFF....WEBPVP8 ").is_err());
        assert!(check(&png(299, 1000)).is_err());
        assert!(check(&jpeg(1000, 299)).is_err());
        assert!(check(&jpeg(300, 751)).is_err());
        assert!(check(&png(2000, 700)).is_err());
        assert!(
            check(&[0xFF, 0xD8, 0xFF, 0xE0, 0x00]).is_err(),
            "truncated JPEG"
        );
        assert!(check(&[0xFF, 0xD8, 0xFF]).is_err());
    }

    #[test]
    fn images_over_ten_megabytes_fail() {
        let mut big = png(1000, 1000);
        big.resize(MAX_IMAGE_BYTES + 1, 0);
        assert!(check(&big).unwrap_err().contains("at most"));
        big.truncate(MAX_IMAGE_BYTES);
        assert!(check(&big).is_ok());
    }
}
