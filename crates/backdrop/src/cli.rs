//! Command-line flags.

use backdrop_core::framing::{parse_offset, FramingRequest};
use backdrop_core::{EngineName, Framing, OutputSize, ResizeMode, SpecError};
use backdrop_imaging::OutputFormat;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Backdrop: backgrounds for product cut-outs and photo expansion, on your own machine.
#[derive(Debug, Parser)]
#[command(name = "backdrop", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file (TOML); default: $BACKDROP_CONFIG, else ./backdrop.toml if present.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate backgrounds for a transparent cut-out (PNG/WebP with alpha).
    Generate(GenerateArgs),
    /// Expand a photo outward by up/down/left/right ratios.
    Expand(ExpandArgs),
    /// Cut the product out of a photo: a transparent PNG of the same size.
    Cutout(CutoutArgs),
    /// List, inspect or download diffusion models.
    #[command(subcommand)]
    Models(crate::models::ModelsCommand),
    /// Run the HTTP task service (API, and workers unless --no-worker).
    Serve(crate::serve::ServeArgs),
    /// Run only the processing loop against the configured database and storage.
    Worker(crate::serve::WorkerArgs),
    /// Manage API keys and credits.
    #[command(subcommand)]
    Keys(crate::serve::KeysCommand),
    /// List the scene templates.
    Scenes {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Flags shared by both jobs.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Number of images.
    #[arg(long, short = 'n', default_value_t = 1)]
    pub n: u32,
    /// Seed of the first image (image i uses SEED + i); random when omitted.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Engine: auto, studio, patch or diffusion.
    #[arg(long, default_value = "auto")]
    pub engine: EngineName,
    /// Output format: png, jpg or webp.
    #[arg(long, default_value = "png")]
    pub format: OutputFormat,
    /// Also write a preview (longest side 512) of each image.
    #[arg(long)]
    pub preview: bool,
    /// Also write a watermarked copy of each image (the clean one is always written).
    #[arg(long)]
    pub watermark: bool,
    /// Print a machine-readable JSON summary on standard output.
    #[arg(long)]
    pub json: bool,
    /// Output directory (created if missing).
    #[arg(long, short = 'o')]
    pub out: PathBuf,
    /// Diffusion engine flags.
    #[command(flatten)]
    pub diffusion: crate::models::DiffusionArgs,
}

/// `backdrop generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The cut-out: PNG or WebP with an alpha channel.
    pub input: PathBuf,
    /// What the background should show (picks a scene for the studio engine).
    #[arg(long, required_unless_present_any = ["scene", "backdrop"])]
    pub prompt: Option<String>,
    /// A scene template id (see `backdrop scenes`).
    #[arg(long)]
    pub scene: Option<String>,
    /// What to avoid.
    #[arg(long)]
    pub negative: Option<String>,
    /// Output size WIDTHxHEIGHT; default: the input's size.
    #[arg(long)]
    pub size: Option<OutputSize>,
    /// How the cut-out fits a different size: just-resize, crop-and-resize, resize-and-fill.
    #[arg(long, default_value = "resize-and-fill")]
    pub resize_mode: ResizeMode,
    /// Pixels the generated area reaches into the cut-out's edge before the exact
    /// composite restores it (0 disables).
    #[arg(long, default_value_t = backdrop_imaging::mask::DEFAULT_BACKGROUND_GROW)]
    pub mask_grow: u32,
    /// Do not cast a contact shadow (studio engine).
    #[arg(long)]
    pub no_shadow: bool,
    /// Cut the product out of the input first: auto (when it has no transparent pixel),
    /// always, never.
    #[arg(long, default_value = "auto")]
    pub cutout: backdrop_core::CutoutMode,
    /// Flags shared with `expand`.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Placement, shadow, reflection and backdrop.
    #[command(flatten)]
    pub framing: FramingArgs,
}

/// How `generate` frames the product (see `backdrop_core::framing`).
#[derive(Debug, Args)]
#[command(next_help_heading = "Framing")]
pub struct FramingArgs {
    /// Fit the product's visible bounding box inside S x the canvas width and height
    /// (0 < S <= 1).
    #[arg(long, value_name = "S")]
    pub scale: Option<f64>,
    /// Free space between the bounding box and the canvas edges: P or TOP,RIGHT,BOTTOM,LEFT;
    /// below 1 a fraction of that side, else pixels.
    #[arg(long, value_name = "P")]
    pub padding: Option<String>,
    /// Where the box sits: center, top, bottom, left, right, top-left, top-right,
    /// bottom-left, bottom-right.
    #[arg(long, value_name = "WHERE")]
    pub align: Option<String>,
    /// Then move it by X,Y pixels (right and down positive).
    #[arg(long, value_name = "X,Y", allow_hyphen_values = true)]
    pub offset: Option<String>,
    /// Shadow style: none, contact, soft, hard or floating (default: the engine's own).
    #[arg(long, value_name = "STYLE")]
    pub shadow: Option<String>,
    /// Where the shadow falls, degrees clockwise: 0 back, 90 right, 180 front, 270 left.
    #[arg(long, value_name = "DEG", allow_negative_numbers = true)]
    pub shadow_direction: Option<f32>,
    /// Shadow darkness, 0..=1.
    #[arg(long, value_name = "F", allow_negative_numbers = true)]
    pub shadow_opacity: Option<f32>,
    /// Shadow blur, 0..=1.
    #[arg(long, value_name = "F", allow_negative_numbers = true)]
    pub shadow_softness: Option<f32>,
    /// Opacity of a mirrored floor reflection, 0..=1 (0, the default, is off).
    #[arg(long, value_name = "F", default_value_t = 0.0, allow_negative_numbers = true)]
    pub reflection: f32,
    /// Skip background generation: `transparent` (PNG/WebP with only product and shadow)
    /// or a plain colour `#RRGGBB`.
    #[arg(long, value_name = "BACKDROP")]
    pub backdrop: Option<String>,
}

impl FramingArgs {
    /// The flags as a [`Framing`], refusing malformed values with their codes.
    pub fn framing(&self) -> Result<Framing, SpecError> {
        FramingRequest {
            scale: self.scale,
            padding: self.padding.as_deref().map(str::parse).transpose()?,
            align: self.align.as_deref(),
            offset: self.offset.as_deref().map(parse_offset).transpose()?,
            shadow: self.shadow.as_deref(),
            shadow_direction: self.shadow_direction,
            shadow_opacity: self.shadow_opacity,
            shadow_softness: self.shadow_softness,
            reflection: Some(self.reflection),
            backdrop: self.backdrop.as_deref(),
        }
        .framing()
    }
}

/// `backdrop expand`.
#[derive(Debug, Args)]
pub struct ExpandArgs {
    /// The photo: PNG, JPEG or WebP.
    pub input: PathBuf,
    /// New area above, as a fraction of the height (0..=2).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub up: f64,
    /// New area below, as a fraction of the height (0..=2).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub down: f64,
    /// New area to the left, as a fraction of the width (0..=2).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub left: f64,
    /// New area to the right, as a fraction of the width (0..=2).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub right: f64,
    /// What the new area should show.
    #[arg(long)]
    pub prompt: Option<String>,
    /// Pixels the generated area overlaps into the original before the exact composite
    /// (the seam is harmonized over it; 0 disables).
    #[arg(long, default_value_t = backdrop_imaging::mask::DEFAULT_EXPANSION_GROW)]
    pub mask_grow: u32,
    /// Flags shared with `generate`.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `backdrop cutout`.
#[derive(Debug, Args)]
pub struct CutoutArgs {
    /// The photo: PNG, JPEG or WebP.
    pub input: PathBuf,
    /// Output directory (created if missing); the result is `cutout-1.png`.
    #[arg(long, short = 'o', default_value = ".")]
    pub out: PathBuf,
    /// Segmentation model id (default: the configured default, else the bundled u2netp).
    #[arg(long)]
    pub model: Option<String>,
    /// Print a machine-readable JSON summary on standard output.
    #[arg(long)]
    pub json: bool,
}
