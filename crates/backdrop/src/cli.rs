//! Command-line flags.

use backdrop_core::{EngineName, OutputSize, ResizeMode};
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
    #[arg(long, required_unless_present = "scene")]
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
