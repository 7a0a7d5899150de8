//! Decoding latents in overlapping tiles, as diffusers' `AutoencoderKL.tiled_decode` does
//! (what `enable_vae_tiling()` turns on for the decoder), so that the KL decoder's
//! activations are a tile's rather than the whole image's.
//!
//! A tile is `tile` pixels square (`tile / scale` latents); tiles start every three
//! quarters of a tile, each is decoded on its own, then blended into the tile above and
//! the tile to its left over a quarter of a tile, linearly, in place and in row order (so
//! a tile blends with neighbours that are already blended), and cropped to three quarters
//! before the tiles are joined. Images no larger than a tile are decoded whole. The
//! result differs from a whole decode (the decoder's group norms and attention see one
//! tile at a time) but has no seams.

use crate::DiffusionError;

/// Whether `tile` (pixels) is usable with a VAE of this scale factor: a multiple of four
/// times it, so that the overlap and blend are whole latents and pixels (diffusers'
/// arithmetic would otherwise give an image of the wrong size).
pub fn check_tile(tile: usize, scale: usize) -> Result<(), String> {
    let step = 4 * scale;
    if tile == 0 || tile % step != 0 {
        return Err(format!("decode_tile = {tile}: must be a positive multiple of {step} pixels"));
    }
    Ok(())
}

/// One decoded tile, `[channels, height, width]` pixels.
#[derive(Default)]
struct Tile {
    data: Vec<f32>,
    height: usize,
    width: usize,
}

impl Tile {
    fn at(&self, c: usize, y: usize, x: usize) -> usize {
        (c * self.height + y) * self.width + x
    }
}

/// Decodes `latents` (`[channels, height, width]`) in tiles of `tile` pixels with
/// `decode(tile_latents, tile_height, tile_width, last)`, which returns the tile's pixels
/// `[out_channels, h * scale, w * scale]` (`last` is true for the final call); returns
/// `[out_channels, height * scale, width * scale]`. Tiles of one shape are decoded one
/// after another, so a decoder built per shape is built once per shape.
pub fn tiled_decode(
    latents: &[f32],
    channels: usize,
    height: usize,
    width: usize,
    tile: usize,
    scale: usize,
    mut decode: impl FnMut(Vec<f32>, usize, usize, bool) -> Result<Vec<f32>, DiffusionError>,
) -> Result<Vec<f32>, DiffusionError> {
    let latent_tile = tile / scale;
    let overlap = latent_tile * 3 / 4;
    let blend = tile / 4;
    let limit = tile - blend;
    let starts = |size: usize| (0..size).step_by(overlap.max(1)).collect::<Vec<_>>();
    let (rows, cols) = (starts(height), starts(width));
    let extent = |start: usize, size: usize| latent_tile.min(size - start);

    let mut order: Vec<(usize, usize)> =
        rows.iter().enumerate().flat_map(|(i, _)| (0..cols.len()).map(move |j| (i, j))).collect();
    order.sort_by_key(|&(i, j)| (extent(rows[i], height), extent(cols[j], width)));
    let mut tiles: Vec<Vec<Tile>> =
        rows.iter().map(|_| cols.iter().map(|_| Tile::default()).collect()).collect();
    let mut out_channels = 0;
    for (n, &(i, j)) in order.iter().enumerate() {
        let (y0, x0) = (rows[i], cols[j]);
        let (th, tw) = (extent(y0, height), extent(x0, width));
        let mut part = Vec::with_capacity(channels * th * tw);
        for c in 0..channels {
            for y in y0..y0 + th {
                let row = (c * height + y) * width;
                part.extend_from_slice(&latents[row + x0..row + x0 + tw]);
            }
        }
        let data = decode(part, th, tw, n + 1 == order.len())?;
        let (h, w) = (th * scale, tw * scale);
        if data.is_empty() || data.len() % (h * w) != 0 {
            return Err(DiffusionError::Failed(format!(
                "VAE decoder: {} values for a {w}x{h} tile",
                data.len()
            )));
        }
        let channels_here = data.len() / (h * w);
        if out_channels != 0 && channels_here != out_channels {
            return Err(DiffusionError::Failed(format!(
                "VAE decoder: {channels_here} channels for a {w}x{h} tile, {out_channels} for another"
            )));
        }
        out_channels = channels_here;
        tiles[i][j] = Tile { data, height: h, width: w };
    }

    // Blend in place, in diffusers' order: each tile with the (already blended) tile
    // above, then with the one to its left.
    for i in 0..rows.len() {
        for j in 0..cols.len() {
            let mut current = std::mem::take(&mut tiles[i][j]);
            if i > 0 {
                blend_into(&mut current, &tiles[i - 1][j], blend, true, out_channels);
            }
            if j > 0 {
                blend_into(&mut current, &tiles[i][j - 1], blend, false, out_channels);
            }
            tiles[i][j] = current;
        }
    }

    // Each tile cropped to `limit` and put where its latents start.
    let (out_h, out_w) = (height * scale, width * scale);
    let mut out = vec![0f32; out_channels * out_h * out_w];
    for (i, &y0) in rows.iter().enumerate() {
        for (j, &x0) in cols.iter().enumerate() {
            let t = &tiles[i][j];
            let (oy, ox) = (y0 * scale, x0 * scale);
            let (h, w) = (t.height.min(limit), t.width.min(limit));
            for c in 0..out_channels {
                for y in 0..h {
                    let from = t.at(c, y, 0);
                    let to = (c * out_h + oy + y) * out_w + ox;
                    out[to..to + w].copy_from_slice(&t.data[from..from + w]);
                }
            }
        }
    }
    Ok(out)
}

/// Blends the last rows (`vertical`) or columns of `other` into the first ones of
/// `current`, over at most `blend` of them: row `k` of the blend becomes
/// `other * (1 - k/extent) + current * (k/extent)`, with the weights computed in double
/// and applied in single precision, as torch does with a Python float.
fn blend_into(current: &mut Tile, other: &Tile, blend: usize, vertical: bool, channels: usize) {
    let (other_len, current_len, across) = if vertical {
        (other.height, current.height, current.width)
    } else {
        (other.width, current.width, current.height)
    };
    let extent = other_len.min(current_len).min(blend);
    for k in 0..extent {
        let b = k as f64 / extent as f64;
        let (wa, wb) = ((1.0 - b) as f32, b as f32);
        let from = other_len - extent + k;
        for c in 0..channels {
            for m in 0..across {
                let (a, at) = if vertical {
                    (other.at(c, from, m), current.at(c, k, m))
                } else {
                    (other.at(c, m, from), current.at(c, m, k))
                };
                current.data[at] = other.data[a] * wa + current.data[at] * wb;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in decoder: each latent becomes a `scale` x `scale` block of its value
    /// plus `offset` (per call, so blending is visible), on one output channel.
    fn blocks(
        scale: usize,
        offset: f32,
    ) -> impl FnMut(Vec<f32>, usize, usize, bool) -> Result<Vec<f32>, DiffusionError> {
        move |latents, h, w, _| {
            let mut out = Vec::with_capacity(h * w * scale * scale);
            for y in 0..h * scale {
                for x in 0..w * scale {
                    out.push(latents[(y / scale) * w + x / scale] + offset);
                }
            }
            Ok(out)
        }
    }

    #[test]
    fn tiles_cover_the_image_and_a_consistent_decoder_gives_a_whole_decode() {
        // A decoder that gives each latent the same pixels wherever its tile starts:
        // blending equal values changes nothing, so the tiled result equals the whole one.
        let (h, w, scale) = (10, 7, 8);
        let latents: Vec<f32> = (0..h * w).map(|v| v as f32).collect();
        let whole = blocks(scale, 0.0)(latents.clone(), h, w, true).expect("decode");
        let mut calls = Vec::new();
        let mut decoder = blocks(scale, 0.0);
        let tiled = tiled_decode(&latents, 1, h, w, 32, scale, |l, th, tw, last| {
            calls.push((th, tw, last));
            decoder(l, th, tw, last)
        })
        .expect("tiled");
        assert_eq!(tiled, whole);
        // Starts every 3 latents: rows 0, 3, 6, 9 and columns 0, 3, 6.
        assert_eq!(calls.len(), 12);
        assert_eq!(calls.iter().filter(|c| c.2).count(), 1, "one last call");
        assert!(calls.last().expect("calls").2, "the last call is marked");
        // Grouped by shape: once a shape is done it does not come back.
        let mut seen = Vec::new();
        for &(th, tw, _) in &calls {
            if seen.last() != Some(&(th, tw)) {
                assert!(!seen.contains(&(th, tw)), "{th}x{tw} decoded in two runs");
                seen.push((th, tw));
            }
        }
    }

    #[test]
    fn overlaps_are_blended_linearly_from_the_tile_above() {
        // Each tile's pixels are offset by 10 x its height + its width in latents, so the
        // two tiles of the first column differ: the first (4x4 latents) gives 44, the one
        // below it (3x4, starting 3 latents = 24 pixels down) gives 34, and rows 24..32
        // blend them with weights 1 - y/8 and y/8.
        let (h, w, scale) = (6, 4, 8);
        let latents = vec![0f32; h * w];
        let out = tiled_decode(&latents, 1, h, w, 32, scale, |l, th, tw, last| {
            blocks(scale, (10 * th + tw) as f32)(l, th, tw, last)
        })
        .expect("tiled");
        assert_eq!(out.len(), 48 * 32);
        let (above, below) = (44.0f32, 34.0f32);
        assert_eq!(out[0], above);
        for y in 0..8 {
            let (wa, wb) = ((1.0 - y as f64 / 8.0) as f32, (y as f64 / 8.0) as f32);
            assert_eq!(out[(24 + y) * 32], above * wa + below * wb, "row {}", 24 + y);
        }
        assert_eq!(out[40 * 32], below, "below the blend the lower tile alone");
    }

    #[test]
    fn a_decoder_that_changes_its_channels_is_an_error_not_a_panic() {
        // Full tiles give one channel, narrower ones two.
        let err = tiled_decode(&[0f32; 8 * 8], 1, 8, 8, 32, 8, |l, th, tw, last| {
            let mut out = blocks(8, 0.0)(l, th, tw, last)?;
            if th * tw < 16 {
                out.extend(out.clone());
            }
            Ok(out)
        })
        .expect_err("must fail");
        assert!(err.to_string().contains("channels"), "{err}");
    }

    #[test]
    fn a_tile_size_must_be_a_multiple_of_four_latents() {
        assert!(check_tile(256, 8).is_ok());
        assert!(check_tile(32, 8).is_ok());
        let err = check_tile(40, 8).expect_err("40 is not a multiple of 32");
        assert!(err.contains("multiple of 32"), "{err}");
        assert!(check_tile(0, 8).is_err());
    }
}
