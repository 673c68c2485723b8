//! Tile sheets: pictures of images side by side on a white canvas, one square cell per image
//! (nearest-pixel scaling), optionally framed in a colour — `data preview`'s original | view 1 |
//! view 2 rows and `eval knn --neighbours`' query | nearest training images rows.
use crate::augment::ops::Planar;
use crate::data::Image;
use crate::error::Error;
use std::path::Path;

/// A grid of `rows × cols` cells of `cell` pixels, `gap` pixels apart and from the border.
pub struct TileSheet {
    rows: usize,
    cols: usize,
    cell: usize,
    gap: usize,
    /// RGB, row-major, `width() × height()` pixels.
    canvas: Vec<u8>,
}

/// A frame's colour: green for a neighbour of the query's class, red for another class.
pub const SAME: [u8; 3] = [0, 160, 60];
pub const OTHER: [u8; 3] = [210, 30, 30];

impl TileSheet {
    pub fn new(rows: usize, cols: usize, cell: usize, gap: usize) -> TileSheet {
        let mut s = TileSheet { rows, cols, cell, gap, canvas: Vec::new() };
        s.canvas = vec![255u8; s.width() * s.height() * 3];
        s
    }

    pub fn width(&self) -> usize {
        self.cols * (self.cell + self.gap) + self.gap
    }

    pub fn height(&self) -> usize {
        self.rows * (self.cell + self.gap) + self.gap
    }

    /// The top-left pixel (y, x) of cell (row, col).
    pub fn origin(&self, row: usize, col: usize) -> (usize, usize) {
        (self.gap + row * (self.cell + self.gap), self.gap + col * (self.cell + self.gap))
    }

    /// Draws a planar [0, 1] image into cell (row, col), scaled to the cell by nearest pixel.
    pub fn paste(&mut self, row: usize, col: usize, img: &Planar) {
        let (top, left) = self.origin(row, col);
        let (w, n) = (self.width(), img.plane());
        for y in 0..self.cell {
            for x in 0..self.cell {
                let (sy, sx) = (y * img.height / self.cell, x * img.width / self.cell);
                for c in 0..3 {
                    let v = img.data[c * n + sy * img.width + sx].clamp(0.0, 1.0);
                    self.canvas[((top + y) * w + left + x) * 3 + c] = (v * 255.0).round() as u8;
                }
            }
        }
    }

    /// Draws a frame `thickness` pixels wide in `colour` inside the edge of cell (row, col), over
    /// the image.
    pub fn frame(&mut self, row: usize, col: usize, colour: [u8; 3], thickness: usize) {
        let (top, left) = self.origin(row, col);
        let w = self.width();
        for y in 0..self.cell {
            for x in 0..self.cell {
                let edge = y < thickness || x < thickness || y + thickness >= self.cell || x + thickness >= self.cell;
                if edge {
                    let at = ((top + y) * w + left + x) * 3;
                    self.canvas[at..at + 3].copy_from_slice(&colour);
                }
            }
        }
    }

    /// Writes the sheet as a PNG beside `out`, then renames it: a failed run never leaves a
    /// partial picture over a good one.
    pub fn save_png(self, out: &Path) -> Result<(), Error> {
        let tmp = out.with_extension("png.tmp");
        let (w, h) = (self.width(), self.height());
        Image::new(w, h, 3, self.canvas).save_png(&tmp).map_err(|e| Error::data(out, format!("cannot write PNG: {e}")))?;
        std::fs::rename(&tmp, out).map_err(|e| Error::data(out, format!("cannot write PNG: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_hold_their_image_scaled_and_frames_stay_inside_their_cell() {
        let mut sheet = TileSheet::new(2, 3, 8, 2);
        assert_eq!((sheet.width(), sheet.height()), (3 * 10 + 2, 2 * 10 + 2));
        // a 2×2 image: each source pixel becomes a 4×4 block
        let img = Planar { height: 2, width: 2, data: vec![0.0, 1.0, 0.5, 0.25, /* G */ 0.0, 0.0, 0.0, 0.0, /* B */ 1.0, 1.0, 1.0, 1.0] };
        sheet.paste(1, 2, &img);
        sheet.frame(0, 1, SAME, 1);
        let w = sheet.width();
        let px = |s: &TileSheet, y: usize, x: usize| [s.canvas[(y * w + x) * 3], s.canvas[(y * w + x) * 3 + 1], s.canvas[(y * w + x) * 3 + 2]];
        let (top, left) = sheet.origin(1, 2);
        assert_eq!((top, left), (12, 22));
        for (dy, dx, red) in [(0, 0, 0u8), (3, 3, 0), (0, 4, 255), (7, 7, 64), (4, 0, 128)] {
            assert_eq!(px(&sheet, top + dy, left + dx), [red, 0, 255], "({dy}, {dx})");
        }
        // the frame: the cell's edge pixels, not its inside, not the gap beside it
        let (t, l) = sheet.origin(0, 1);
        assert_eq!(px(&sheet, t, l), SAME);
        assert_eq!(px(&sheet, t + 7, l + 3), SAME);
        assert_eq!(px(&sheet, t + 3, l + 3), [255; 3]);
        assert_eq!(px(&sheet, t, l - 1), [255; 3]);
        assert_eq!(px(&sheet, t + 8, l), [255; 3]);
    }
}
