//! What a task costs in credits.
//!
//! Each surface prices the way its vendor documents, so a team moving from a hosted API
//! keeps its budget arithmetic. The defaults come from the vendors' published tables and
//! can be replaced in configuration.
//!
//! | surface | rule | default |
//! |---|---|---|
//! | native | per image | 1 |
//! | Cutout.pro | per image, by output resolution tier | up to 512x512: 3, up to 1024x1024: 6, up to 1920x1080 (by area): 12; larger: 12 |
//! | PicWish | by image count | 1/2/3/4 images: 3/6/8/10, then +2 per image |
//! | PicPik | per image | 1 |
//! | Kling | per image | 1 |

use serde::{Deserialize, Serialize};

/// A price table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PriceTable {
    /// Native API, per image.
    pub native_per_image: i64,
    /// Cutout.pro tiers: `(max pixels, credits per image)`, ascending; beyond the last
    /// tier the last price applies.
    pub cutout_tiers: Vec<(u64, i64)>,
    /// PicWish price of 1, 2, 3, 4 ... images; beyond the list, each further image adds
    /// the difference of the last two entries.
    pub picwish_by_count: Vec<i64>,
    /// PicPik, per image.
    pub picpik_per_image: i64,
    /// Kling, per image.
    pub kling_per_image: i64,
}

impl Default for PriceTable {
    fn default() -> Self {
        PriceTable {
            native_per_image: 1,
            cutout_tiers: vec![(512 * 512, 3), (1024 * 1024, 6), (1920 * 1080, 12)],
            picwish_by_count: vec![3, 6, 8, 10],
            picpik_per_image: 1,
            kling_per_image: 1,
        }
    }
}

impl PriceTable {
    /// Native price of `n` images.
    pub fn native(&self, n: u32) -> i64 {
        self.native_per_image * i64::from(n)
    }

    /// Cutout.pro price of `n` images of `width` x `height`.
    pub fn cutout(&self, width: u32, height: u32, n: u32) -> i64 {
        let pixels = u64::from(width) * u64::from(height);
        let per = self
            .cutout_tiers
            .iter()
            .find(|(max, _)| pixels <= *max)
            .or(self.cutout_tiers.last())
            .map_or(0, |(_, price)| *price);
        per * i64::from(n)
    }

    /// PicWish price of `n` images.
    pub fn picwish(&self, n: u32) -> i64 {
        let table = &self.picwish_by_count;
        let n = n as usize;
        match (n, table.len()) {
            (0, _) | (_, 0) => 0,
            (n, len) if n <= len => table[n - 1],
            (n, len) => {
                let step = if len >= 2 { table[len - 1] - table[len - 2] } else { table[0] };
                table[len - 1] + step * (n - len) as i64
            }
        }
    }

    /// PicPik price of `n` images.
    pub fn picpik(&self, n: u32) -> i64 {
        self.picpik_per_image * i64::from(n)
    }

    /// Kling price of `n` images.
    pub fn kling(&self, n: u32) -> i64 {
        self.kling_per_image * i64::from(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendor_tables() {
        let p = PriceTable::default();
        assert_eq!(p.cutout(512, 512, 1), 3);
        assert_eq!(p.cutout(513, 512, 1), 6);
        assert_eq!(p.cutout(1024, 1024, 2), 12);
        assert_eq!(p.cutout(1920, 1080, 1), 12);
        assert_eq!(p.cutout(4000, 4000, 1), 12);
        assert_eq!([1, 2, 3, 4, 5].map(|n| p.picwish(n)), [3, 6, 8, 10, 12]);
        assert_eq!(p.native(3), 3);
        assert_eq!(p.kling(9), 9);
    }
}
