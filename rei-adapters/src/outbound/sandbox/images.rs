//! Placeholder images: a PNG that shows the prompt, the shape and the size asked for.

use async_trait::async_trait;
use embedded_graphics::mono_font::MonoTextStyle;
use embedded_graphics::mono_font::iso_8859_5::{FONT_9X15, FONT_10X20};
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{PrimitiveStyle, Rectangle};
use embedded_graphics::text::{Baseline, Text};
use rei_core::ports::{GeneratedImage, ImageGenerator, ImageRequest, ProviderError};
use rei_core::pricing::{AspectRatio, Resolution};

/// The long side of the drawing, before it is scaled up to the size asked for.
const DRAWN_LONG_SIDE: u32 = 512;
/// Space around the text, in drawn pixels.
const MARGIN: u32 = 24;

/// Draws [`placeholder_png`]s instead of calling Nano Banana Pro.
#[derive(Clone, Copy, Debug, Default)]
pub struct SandboxImages;

#[async_trait]
impl ImageGenerator for SandboxImages {
    async fn generate(&self, request: &ImageRequest) -> Result<GeneratedImage, ProviderError> {
        let (prompt, aspect, resolution) =
            (request.prompt.clone(), request.aspect, request.resolution);
        // Encoding a 4K picture takes a moment: off the async threads.
        let bytes =
            tokio::task::spawn_blocking(move || placeholder_png(&prompt, aspect, resolution))
                .await
                .map_err(|e| ProviderError::Transient {
                    message: format!("the sandbox's drawing task failed: {e}"),
                })?
                .map_err(|e| ProviderError::Unknown {
                    message: format!("the sandbox's placeholder could not be encoded: {e}"),
                })?;
        tracing::info!(job_id = %request.job_id, bytes = bytes.len(), "sandbox image drawn");
        Ok(GeneratedImage {
            bytes,
            mime_type: "image/png".into(),
            caption: None,
        })
    }
}

/// An RGB picture embedded-graphics draws on.
struct Canvas {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
}

impl Canvas {
    fn new(width: u32, height: u32, background: Rgb888) -> Self {
        let count = usize::try_from(u64::from(width) * u64::from(height)).unwrap_or(0);
        let mut pixels = Vec::with_capacity(count * 3);
        for _ in 0..count {
            pixels.extend_from_slice(&[background.r(), background.g(), background.b()]);
        }
        Self {
            width,
            height,
            pixels,
        }
    }

    fn row(&self, y: u32) -> &[u8] {
        let width = usize::try_from(self.width).unwrap_or(0) * 3;
        let start = usize::try_from(y).unwrap_or(0) * width;
        self.pixels.get(start..start + width).unwrap_or(&[])
    }
}

impl OriginDimensions for Canvas {
    fn size(&self) -> Size {
        Size::new(self.width, self.height)
    }
}

impl DrawTarget for Canvas {
    type Color = Rgb888;
    type Error = std::convert::Infallible;

    fn draw_iter<I>(&mut self, pixels: I) -> Result<(), Self::Error>
    where
        I: IntoIterator<Item = Pixel<Self::Color>>,
    {
        for Pixel(point, color) in pixels {
            let (Ok(x), Ok(y)) = (u32::try_from(point.x), u32::try_from(point.y)) else {
                continue;
            };
            if x >= self.width || y >= self.height {
                continue;
            }
            let at = usize::try_from(u64::from(y) * u64::from(self.width) + u64::from(x))
                .unwrap_or(usize::MAX)
                .saturating_mul(3);
            if let Some(pixel) = self.pixels.get_mut(at..at + 3) {
                pixel.copy_from_slice(&[color.r(), color.g(), color.b()]);
            }
        }
        Ok(())
    }
}

/// Width and height of `aspect` (1:1 when none was chosen), the long side `long`.
fn dimensions(aspect: Option<AspectRatio>, long: u32) -> (u32, u32) {
    let ratio = aspect.map_or("1:1", AspectRatio::as_str);
    let (w, h) = ratio
        .split_once(':')
        .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
        .filter(|(w, h)| *w > 0 && *h > 0)
        .unwrap_or((1, 1));
    if w >= h {
        (long, (long * h / w).max(1))
    } else {
        ((long * w / h).max(1), long)
    }
}

/// How many times the drawing is scaled up: 1K is about 1024 px on the long side, 2K
/// about 2048, 4K about 4096, as Nano Banana Pro's sizes.
const fn scale(resolution: Resolution) -> u32 {
    match resolution {
        Resolution::OneK => 2,
        Resolution::TwoK => 4,
        Resolution::FourK => 8,
    }
}

/// A calm background that differs from prompt to prompt.
fn background(prompt: &str) -> Rgb888 {
    let hash = super::fnv1a(prompt.bytes());
    let [a, b, c, ..] = hash.to_le_bytes();
    Rgb888::new(24 + a % 48, 24 + b % 48, 40 + c % 64)
}

/// Splits `text` into lines of at most `width` characters, at spaces where it can.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    for paragraph in text.lines() {
        let mut line = String::new();
        for word in paragraph.split_whitespace() {
            let mut word: Vec<char> = word.chars().collect();
            // A word longer than a line is cut.
            while word.len() > width {
                if !line.is_empty() {
                    lines.push(std::mem::take(&mut line));
                }
                lines.push(word.drain(..width).collect());
            }
            let word: String = word.into_iter().collect();
            let needed =
                line.chars().count() + usize::from(!line.is_empty()) + word.chars().count();
            if needed > width && !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(&word);
        }
        if !line.is_empty() {
            lines.push(line);
        }
    }
    lines
}

/// A PNG of the size `resolution` and shape `aspect` asked for, showing "REI SANDBOX",
/// the prompt (Latin and Cyrillic; other characters as `?`) and the choices.
///
/// # Errors
/// When the encoder fails (it writes to memory: only on a bug).
pub fn placeholder_png(
    prompt: &str,
    aspect: Option<AspectRatio>,
    resolution: Resolution,
) -> Result<Vec<u8>, png::EncodingError> {
    let (width, height) = dimensions(aspect, DRAWN_LONG_SIDE);
    let mut canvas = Canvas::new(width, height, background(prompt));
    let white = Rgb888::new(0xed, 0xf2, 0xf4);
    let accent = Rgb888::new(0xef, 0x23, 0x3c);
    let frame = Rectangle::new(
        Point::new(8, 8),
        Size::new(width.saturating_sub(16), height.saturating_sub(16)),
    );
    // Drawing on memory cannot fail (`Infallible`).
    let _: Result<(), std::convert::Infallible> = frame
        .into_styled(PrimitiveStyle::with_stroke(accent, 3))
        .draw(&mut canvas);
    let title = MonoTextStyle::new(&FONT_10X20, accent);
    let body = MonoTextStyle::new(&FONT_9X15, white);
    let left = i32::try_from(MARGIN).unwrap_or(24);
    let mut y = left;
    let _: Result<Point, std::convert::Infallible> =
        Text::with_baseline("REI SANDBOX", Point::new(left, y), title, Baseline::Top)
            .draw(&mut canvas);
    y += 32;
    let columns = usize::try_from((width.saturating_sub(2 * MARGIN)) / 9).unwrap_or(1);
    let rows = usize::try_from(height.saturating_sub(2 * MARGIN + 32 + 40) / 17).unwrap_or(0);
    // The font has Latin and Cyrillic: common typography is drawn as its plain look-alike.
    let plain: String = prompt
        .chars()
        .map(|c| match c {
            '\u{2013}' | '\u{2014}' | '\u{2212}' => '-',
            '\u{00ab}' | '\u{00bb}' | '\u{201c}' | '\u{201d}' | '\u{201e}' => '"',
            '\u{2018}' | '\u{2019}' => '\'',
            c => c,
        })
        .collect();
    let mut lines = wrap(&plain, columns);
    if lines.len() > rows {
        lines.truncate(rows);
        if let Some(last) = lines.last_mut() {
            last.push('…');
        }
    }
    for line in &lines {
        let _: Result<Point, std::convert::Infallible> =
            Text::with_baseline(line, Point::new(left, y), body, Baseline::Top).draw(&mut canvas);
        y += 17;
    }
    let footer = format!(
        "{} {} - no provider was called",
        aspect.map_or("1:1", AspectRatio::as_str),
        resolution.as_str()
    );
    let bottom = i32::try_from(height.saturating_sub(MARGIN + 15)).unwrap_or(0);
    let _: Result<Point, std::convert::Infallible> =
        Text::with_baseline(&footer, Point::new(left, bottom), body, Baseline::Top)
            .draw(&mut canvas);

    // Scaled up row by row while encoding: the full-size picture is never in memory.
    let factor = scale(resolution);
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width * factor, height * factor);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder.write_header()?;
    {
        let mut stream = writer.stream_writer()?;
        let factor_usize = usize::try_from(factor).unwrap_or(1);
        let mut wide = Vec::with_capacity(usize::try_from(width * factor * 3).unwrap_or(0));
        for y in 0..height {
            wide.clear();
            for pixel in canvas.row(y).chunks_exact(3) {
                for _ in 0..factor_usize {
                    wide.extend_from_slice(pixel);
                }
            }
            for _ in 0..factor {
                std::io::Write::write_all(&mut stream, &wide)?;
            }
        }
        stream.finish()?;
    }
    writer.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    #[test]
    fn the_placeholder_has_the_shape_and_size_asked_for() {
        let png = placeholder_png("a cat", Some(AspectRatio::Wide16x9), Resolution::OneK).unwrap();
        let (w, h, _) = decode(&png);
        assert_eq!((w, h), (1024, 576));
        let png = placeholder_png("a cat", Some(AspectRatio::Tall9x16), Resolution::TwoK).unwrap();
        let (w, h, _) = decode(&png);
        assert_eq!((w, h), (1152, 2048));
        let png = placeholder_png("a cat", None, Resolution::FourK).unwrap();
        let (w, h, _) = decode(&png);
        assert_eq!((w, h), (4096, 4096));
    }

    #[test]
    fn the_placeholder_shows_the_prompt() {
        // Two prompts of the same length differ in their drawn text, not only their colour:
        // compare where the text pixels (the body's white) are.
        let white = |bytes: &[u8]| -> Vec<usize> {
            let (_, _, pixels) = decode(bytes);
            pixels
                .chunks_exact(3)
                .enumerate()
                .filter(|(_, p)| p == &[0xed, 0xf2, 0xf4])
                .map(|(i, _)| i)
                .collect()
        };
        let a = placeholder_png("кот в шляпе", None, Resolution::OneK).unwrap();
        let b = placeholder_png("пёс в шляпе", None, Resolution::OneK).unwrap();
        let (a, b) = (white(&a), white(&b));
        assert!(a.len() > 1000, "text is drawn: {} white pixels", a.len());
        assert_ne!(a, b, "the prompt's own letters are drawn");
    }

    #[test]
    fn long_prompts_wrap_and_long_words_are_cut() {
        assert_eq!(wrap("a bb ccc", 4), vec!["a bb", "ccc"]);
        assert_eq!(wrap("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
        assert_eq!(wrap("one\ntwo", 40), vec!["one", "two"]);
        assert!(wrap("", 10).is_empty());
    }
}
