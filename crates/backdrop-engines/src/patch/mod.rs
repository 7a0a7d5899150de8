//! `patch`: multi-scale PatchMatch image completion.
//!
//! The hole (mask > 0, or any pixel that is not fully opaque) is filled with patches of
//! the known area so that every patch of the result looks like some patch of the input:
//! the new border of an expanded photo continues its textures and structures, and the
//! transparent area around a product continues whatever surrounds it.
//!
//! # Algorithm
//! Completion is an EM-style optimisation run coarse to fine over an image pyramid:
//!
//! 1. **Pyramid.** The canvas is halved repeatedly until the deepest hole pixel lies
//!    within a couple of patch widths of the known area (so patches at the coarsest
//!    level see across the whole hole and decide its layout), while that level still
//!    has enough fully known patches to copy from. A coarse pixel is known only if all
//!    pixels under it are.
//! 2. **Coarsest start.** The hole is peeled from its border inward, each pixel the mean
//!    of its already filled neighbours, so colours and edges run outward from the known
//!    area; the nearest-neighbour field (NNF) starts random.
//! 3. **Search (E step).** For each patch overlapping the hole the NNF holds the centre of
//!    the most similar fully known patch. PatchMatch improves it: *propagation* tries the
//!    neighbour's match shifted by one pixel (good matches are coherent, so they spread),
//!    and *random search* tries points around the current match at radii halving from
//!    the image size (coarsest level) or from a small refinement radius (finer levels,
//!    whose field comes from the level above). Patch distances are sums of squared RGB
//!    differences, abandoned as soon as they exceed the best so far, plus three priors
//!    that keep the fill from repeating the subject of the photo:
//!    - *locality*, a cost growing with the distance between a patch and its source, so
//!      the fill next to the border continues what it touches rather than importing
//!      content from across the image;
//!    - the *band* prior, a cost growing with how deep the source lies inside the known
//!      area (free within a band along the hole), so the new border is made of what lies
//!      along the old one and not of the object in the middle;
//!    - the *reuse* prior at the coarsest level, where the layout is decided: a source
//!      region already copied more than once per pixel costs more for each further use,
//!      so a distinctive motif is not stamped again and again.
//!
//! 4. **Vote (M step).** Every hole pixel becomes the weighted mean of the colours that
//!    the matched patches covering it propose. Weights fall with the patch distance,
//!    relative to the level's typical distance and scaled by a *temperature*, and with
//!    the depth of the patch centre into the hole, so patches anchored at the known
//!    border lead. Coarse levels average broadly (a stable layout); the finest level uses
//!    a low temperature, close to copying the best patch, so the fill keeps the detail of
//!    the original instead of the blur an average of misaligned patches would give.
//! 5. **Next level.** The NNF is scaled up (each patch inherits its parent's match), the
//!    hole is reconstructed from it with full-resolution sources, and the EM iterations
//!    continue at the finer level. Known pixels are never changed, so they come through
//!    the finest level exactly.
//! 6. **Smooth fallback.** At the finest level, fill pixels whose source patch is flat
//!    (sky, a plain wall) blend toward a blur of the fill, so patches copied from
//!    different parts of a gradient leave no block edges; textured pixels keep their
//!    detail (see `smooth`).
//!
//! # Parameters
//! See [`PatchParams`]: patch radius, pyramid depth, EM iterations per level (coarsest,
//! middle, finest), search passes and radius, vote temperatures, depth falloff, locality,
//! the band and reuse priors and the smooth fallback. The defaults fill a 1024 x 1024
//! expansion of a 640 x 640 photo with about 1.3 s of CPU time in a release build, most
//! of it in parallel passes, so under that on two cores.
//!
//! # Determinism
//! The same input and seed always give the same bytes, however rayon schedules the
//! work: search passes run on fixed bands of rows, each with a generator seeded from the
//! image seed, level, iteration and band, reading other bands only from a snapshot taken
//! before the pass; votes read only the previous state. Image `i` uses
//! [`EngineInput::image_seed`], so different seeds start from different random fields and
//! give different fills.
//!
//! # Progress
//! One step per EM iteration of each level; the step count is the same for every image
//! of a run. Cancellation is checked before each step.

mod level;
mod matcher;
mod smooth;

use backdrop_core::{
    CancelToken, Engine, EngineError, EngineInput, EngineOutput, EngineResult, RunControl,
    StepProgress,
};
use image::{GrayImage, RgbImage, RgbaImage};
use level::{Level, CHANNELS};
use matcher::{vote, Nnf, SearchParams, VoteParams, MAX_RADIUS};
use smooth::{smooth_fallback, SmoothParams};

const ENGINE: &str = "patch";

/// Tuning of the patch engine. The defaults are what the engine uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PatchParams {
    /// Patch radius in pixels: patches are `2 * radius + 1` square (at most 9 x 9).
    /// Smaller radii are used automatically when the known area is too thin for it.
    pub patch_radius: u32,
    /// Most pyramid levels, the full-size level included.
    pub max_levels: u32,
    /// Halving stops once the deepest hole pixel is at most this many pixels from the
    /// known area: deeper coarse levels would decide the layout from too few pixels.
    pub coarsest_depth: u32,
    /// EM iterations at the coarsest level, where the layout is decided.
    pub coarse_iterations: u32,
    /// EM iterations at each level between the coarsest and the finest.
    pub middle_iterations: u32,
    /// EM iterations at the finest level (the most expensive).
    pub fine_iterations: u32,
    /// PatchMatch passes per EM iteration (scan direction alternates).
    pub search_passes: u32,
    /// PatchMatch passes per EM iteration at the finest level, where the field comes
    /// refined from the level above and a pass costs four times the one before.
    pub fine_search_passes: u32,
    /// Largest random-search radius, in pixels, below the coarsest level: there the field
    /// starts from the coarser level's and mostly needs local refinement, and distant
    /// jumps would cost time for little. The coarsest level searches the whole image.
    pub refine_radius: u32,
    /// Vote temperature at all but the finest level: at 1 a patch's weight falls by a
    /// factor `e` for every 75th-percentile patch distance (of that level) it matches
    /// worse by.
    pub temperature: f32,
    /// Vote temperature at the finest level; 0 copies the best-matching patch.
    pub fine_temperature: f32,
    /// Natural log of the confidence lost per pixel a voting patch's centre lies deeper
    /// in the hole.
    pub depth_falloff: f32,
    /// Search cost, per patch pixel in squared 8-bit units, of a source one image
    /// diagonal away from its target (linear in the distance); 0 lets sources come from
    /// anywhere at no cost.
    pub locality: f32,
    /// Band prior: search cost, per patch pixel in squared 8-bit units, of a source at the
    /// deepest point of the known area (farthest from the hole); it rises linearly from 0
    /// at `band_free` of that depth. 0 disables it.
    pub band: f32,
    /// Share of the known area's depth, from the hole inward, that the band prior leaves
    /// free.
    pub band_free: f32,
    /// Reuse prior: search cost, per patch pixel in squared 8-bit units, for each use of a
    /// source region beyond one target per source pixel. 0 disables it.
    pub reuse: f32,
    /// Smooth fallback at the finest level: a fill pixel whose source patch has a grey
    /// standard deviation at or below this is fully replaced by a smooth continuation.
    pub smooth_flat: f32,
    /// Source standard deviation at or above which the fill keeps the copied detail.
    pub smooth_textured: f32,
    /// Blur (Gaussian sigma, pixels) of the smooth continuation; 0 disables the fallback.
    pub smooth_sigma: f32,
}

impl Default for PatchParams {
    fn default() -> Self {
        PatchParams {
            patch_radius: 3,
            max_levels: 8,
            coarsest_depth: 12,
            coarse_iterations: 6,
            middle_iterations: 2,
            fine_iterations: 1,
            search_passes: 2,
            fine_search_passes: 1,
            refine_radius: 32,
            temperature: 1.0,
            fine_temperature: 0.1,
            depth_falloff: 0.26,
            locality: 3000.0,
            band: 5000.0,
            band_free: 0.2,
            reuse: 1000.0,
            smooth_flat: 1.5,
            smooth_textured: 5.0,
            smooth_sigma: 3.0,
        }
    }
}

/// The patch engine: fills the mask with patches of the known area (no weights).
#[derive(Debug, Default, Clone)]
pub struct PatchEngine {
    params: PatchParams,
}

impl PatchEngine {
    /// An engine with the given tuning.
    pub fn new(params: PatchParams) -> Self {
        PatchEngine { params }
    }

    /// The tuning in use.
    pub fn params(&self) -> &PatchParams {
        &self.params
    }
}

impl Engine for PatchEngine {
    fn name(&self) -> &'static str {
        ENGINE
    }

    /// The pyramid's levels (colour, known, target, valid, sources, depths) and the
    /// nearest-neighbour field with its distances, priors and vote sums: measured at 96
    /// to 105 bytes per canvas pixel (1024 and 2048 px squares), so 128.
    fn working_memory(&self, width: u32, height: u32) -> u64 {
        u64::from(width) * u64::from(height) * 128
    }

    fn generate(&self, input: &EngineInput<'_>, run: RunControl<'_>) -> EngineResult {
        let RunControl { progress, cancel } = run;
        cancel.check()?;
        let canvas = input.canvas;
        let mask = input.mask;
        if canvas.dimensions() != mask.dimensions() {
            return Err(failed(format!(
                "mask is {}x{} but the canvas is {}x{}",
                mask.width(),
                mask.height(),
                canvas.width(),
                canvas.height()
            )));
        }
        // Matches store positions in 16 bits per axis.
        if canvas.width() >= 0xffff || canvas.height() >= 0xffff {
            return Err(failed(format!(
                "canvas {}x{} is too large; each side must be below 65535",
                canvas.width(),
                canvas.height()
            )));
        }
        let copy = || image::DynamicImage::ImageRgba8(canvas.clone()).to_rgb8();
        if mask.pixels().all(|m| m.0[0] == 0) {
            return Ok(EngineOutput {
                images: (0..input.n).map(|_| copy()).collect(),
                notes: vec![],
            });
        }
        let plan = Plan::new(canvas, mask, &self.params)?;
        let mut images = Vec::with_capacity(input.n as usize);
        for index in 0..input.n {
            let report = |step: u32| {
                progress.step(StepProgress {
                    image: index,
                    images: input.n,
                    step,
                    steps: plan.steps,
                })
            };
            images.push(plan.complete(input.image_seed(index), cancel, &report)?);
        }
        Ok(EngineOutput { images, notes: vec![] })
    }
}

fn failed(reason: String) -> EngineError {
    EngineError::Failed { engine: ENGINE, reason }
}

/// The pyramid and schedule shared by every image of a run.
struct Plan<'a> {
    params: &'a PatchParams,
    /// Finest first.
    levels: Vec<Level>,
    radius: usize,
    steps: u32,
}

impl<'a> Plan<'a> {
    fn new(
        canvas: &RgbaImage,
        mask: &GrayImage,
        params: &'a PatchParams,
    ) -> Result<Self, EngineError> {
        let wanted = (params.patch_radius as usize).min(MAX_RADIUS);
        let mut finest = Level::from_canvas(canvas, mask, wanted);
        if !finest.has_known() {
            return Err(failed(
                "nothing to continue: no pixel is both opaque and outside the mask".into(),
            ));
        }
        // A thin or tiny known area may hold no full patch of the wanted size: shrink the
        // patch until one fits (a radius of 0 fits any known pixel).
        let mut radius = wanted;
        while finest.sources.is_empty() && radius > 0 {
            radius -= 1;
            finest = Level::from_canvas(canvas, mask, radius);
        }
        let mut levels = vec![finest];
        while levels.len() < params.max_levels.max(1) as usize {
            let Some(last) = levels.last() else { break };
            // Stop once the hole is shallow enough for patches to see across it: coarser
            // levels would decide the layout from too few pixels, and tiny ones have
            // nothing left to copy.
            let shallow = last.max_depth() <= params.coarsest_depth.max(1);
            if shallow || last.w.min(last.h) < 4 * (2 * radius + 1) {
                break;
            }
            let next = last.downsample(radius);
            if next.sources.len() < 8 || !next.has_known() {
                break;
            }
            levels.push(next);
        }
        let steps = (0..levels.len()).map(|l| iterations(params, l, levels.len())).sum();
        Ok(Plan { params, levels, radius, steps })
    }

    /// Fills one image.
    fn complete(
        &self,
        seed: u64,
        cancel: &CancelToken,
        report: &dyn Fn(u32),
    ) -> Result<RgbImage, EngineError> {
        let mut levels = self.levels.clone();
        let count = levels.len();
        let mut step = 0;
        let mut nnf: Option<Nnf> = None;
        for l in (0..count).rev() {
            let (finer, coarser) = levels.split_at_mut(l + 1);
            let level = &mut finer[l];
            let diagonal = ((level.w * level.w + level.h * level.h) as f32).sqrt().max(1.0);
            let search = SearchParams {
                radius: self.radius,
                locality: self.params.locality,
                inv_diagonal: 1.0 / diagonal,
                band: self.params.band,
                band_free: self.params.band_free,
                // The layout is decided at the coarsest level, so that is where repeated
                // regions are spread out; finer levels refine what they inherit, and
                // spreading their sources too would break coherent copies into a blur
                // of disagreeing proposals.
                reuse: if l + 1 == count { self.params.reuse } else { 0.0 },
            };
            let temperature =
                if l == 0 { self.params.fine_temperature } else { self.params.temperature };
            let vote_params = VoteParams {
                radius: self.radius,
                temperature,
                depth_falloff: self.params.depth_falloff,
            };
            let tag = |what: u64, iter: u64| (l as u64) << 40 | what << 32 | iter;
            let mut field = match (nnf.take(), coarser.first()) {
                (Some(parent), Some(coarse)) => {
                    level.upsample_hole_from(coarse);
                    let field = parent.upsample(coarse, level, search, seed, tag(1, 0));
                    // Rebuild the hole from full-resolution sources before searching, so
                    // the search compares against detail rather than an upscaled blur.
                    vote(level, &field, vote_params);
                    field
                }
                _ => {
                    level.onion_fill();
                    Nnf::random(level, search, seed, tag(0, 0))
                }
            };
            let max_radius = if l + 1 == count {
                level.w.max(level.h)
            } else {
                level.w.max(level.h).min(self.params.refine_radius.max(1) as usize)
            };
            for iter in 0..iterations(self.params, l, count) {
                cancel.check()?;
                field.recompute(level, search);
                let passes =
                    if l == 0 { self.params.fine_search_passes } else { self.params.search_passes };
                for pass in 0..passes.max(1) as usize {
                    let pass_tag = tag(2, u64::from(iter) << 8 | pass as u64);
                    field.search(level, search, max_radius, seed, pass_tag, pass);
                }
                vote(level, &field, vote_params);
                step += 1;
                report(step);
            }
            if l == 0 {
                let smooth = SmoothParams {
                    radius: self.radius,
                    flat: self.params.smooth_flat,
                    textured: self.params.smooth_textured,
                    sigma: self.params.smooth_sigma,
                };
                smooth_fallback(level, &field, smooth);
            }
            nnf = Some(field);
        }
        let finest = &levels[0];
        let mut out = RgbImage::new(finest.w as u32, finest.h as u32);
        for (px, src) in out.pixels_mut().zip(finest.img.chunks_exact(CHANNELS)) {
            px.0.copy_from_slice(&src[..3]);
        }
        Ok(out)
    }
}

/// EM iterations at level `l` (0 = finest) of `count` levels.
fn iterations(params: &PatchParams, l: usize, count: usize) -> u32 {
    // A single level is both coarsest and finest: it needs the coarse iterations.
    let n = if l + 1 == count {
        params.coarse_iterations
    } else if l == 0 {
        params.fine_iterations
    } else {
        params.middle_iterations
    };
    n.max(1)
}

#[cfg(test)]
mod tests;
