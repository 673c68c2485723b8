//! A decoded image held compactly as interleaved `u8` (HWC), grey (1 channel) or RGB (3).
use crate::error::Error;
use std::path::Path;

#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    pub width: usize,
    pub height: usize,
    /// 1 (grey) or 3 (RGB).
    pub channels: usize,
    /// `height * width * channels` bytes, row-major, channels interleaved.
    pub data: Vec<u8>,
}

impl Image {
    pub fn new(width: usize, height: usize, channels: usize, data: Vec<u8>) -> Self {
        assert_eq!(data.len(), width * height * channels, "image buffer size");
        assert!(channels == 1 || channels == 3, "channels must be 1 or 3");
        Image { width, height, channels, data }
    }

    /// Value of channel `c` (0..3) at (y, x); a grey image answers the same value for every channel.
    #[inline]
    pub fn at(&self, y: usize, x: usize, c: usize) -> u8 {
        let ch = if self.channels == 1 { 0 } else { c };
        self.data[(y * self.width + x) * self.channels + ch]
    }

    /// Decodes a JPEG or PNG file. Errors name the file and the decoder's complaint.
    pub fn decode_file(path: &Path) -> Result<Image, Error> {
        let bytes = std::fs::read(path).map_err(|e| Error::data(path, format!("cannot read: {e}")))?;
        Self::decode_bytes(&bytes).map_err(|problem| Error::data(path, problem))
    }

    pub fn decode_bytes(bytes: &[u8]) -> Result<Image, String> {
        let img = image::load_from_memory(bytes).map_err(|e| format!("cannot decode image: {e}"))?;
        Ok(match img.color() {
            image::ColorType::L8 | image::ColorType::L16 | image::ColorType::La8 | image::ColorType::La16 => {
                let g = img.to_luma8();
                Image::new(g.width() as usize, g.height() as usize, 1, g.into_raw())
            }
            _ => {
                let rgb = img.to_rgb8();
                Image::new(rgb.width() as usize, rgb.height() as usize, 3, rgb.into_raw())
            }
        })
    }

    /// Encodes as PNG (used by previews).
    pub fn save_png(&self, path: &Path) -> anyhow::Result<()> {
        let color = if self.channels == 1 { image::ExtendedColorType::L8 } else { image::ExtendedColorType::Rgb8 };
        image::save_buffer_with_format(path, &self.data, self.width as u32, self.height as u32, color, image::ImageFormat::Png)?;
        Ok(())
    }
}
