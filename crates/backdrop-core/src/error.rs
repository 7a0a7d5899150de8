//! Stable error codes.
//!
//! Every error Backdrop reports carries one [`ErrorCode`]. The string form
//! ([`ErrorCode::as_str`]) is part of the public contract: it is printed by the command
//! line, returned by the API and persisted with failed tasks, so a code is never renamed
//! once released. Surfaces map codes to their own status values (HTTP status, vendor
//! codes); that mapping lives with the surface, not here.

use std::fmt;

macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident => $text:literal,)*) => {
        /// A stable, machine-readable error code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code as it appears on the wire and in logs.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $text,)*
                }
            }
        }
    };
}

error_codes! {
    // --- job parameters ---
    /// A background job needs a prompt or a scene id.
    PromptOrSceneRequired => "prompt_or_scene_required",
    /// The prompt is longer than allowed.
    PromptTooLong => "prompt_too_long",
    /// The negative prompt is longer than allowed.
    NegativePromptTooLong => "negative_prompt_too_long",
    /// The scene id is not in the catalogue.
    UnknownScene => "unknown_scene",
    /// The number of images asked for is out of range.
    ImageCountOutOfRange => "image_count_out_of_range",
    /// The requested output size is out of range.
    OutputSizeOutOfRange => "output_size_out_of_range",
    /// The number of steps is out of range.
    StepsOutOfRange => "steps_out_of_range",
    /// The guidance scale is not a number or out of range.
    GuidanceOutOfRange => "guidance_out_of_range",
    /// The scheduler name is not one the diffusion engine implements.
    UnknownScheduler => "unknown_scheduler",
    /// A model id is malformed.
    InvalidModelId => "invalid_model_id",
    /// A LoRA name is malformed or its weight out of range.
    InvalidLora => "invalid_lora",
    /// The reference image strength is outside [0, 1].
    ReferenceStrengthOutOfRange => "reference_strength_out_of_range",
    /// An expansion ratio is outside [0, 2] or not a number.
    RatioOutOfRange => "ratio_out_of_range",
    /// The expanded canvas would be more than 3x the original's area.
    ExpansionAreaTooLarge => "expansion_area_too_large",
    /// All four expansion ratios are zero.
    NothingToExpand => "nothing_to_expand",
    /// The expanded canvas would exceed the maximum dimensions.
    CanvasTooLarge => "canvas_too_large",
    /// The engine name is unknown or not available for this job.
    UnknownEngine => "unknown_engine",
    // --- framing (placement, shadow, reflection, backdrop) ---
    /// The placement scale is outside (0, 1].
    ScaleOutOfRange => "scale_out_of_range",
    /// A padding value is malformed or negative.
    InvalidPadding => "invalid_padding",
    /// The padding leaves no room for the product.
    PaddingLeavesNoRoom => "padding_leaves_no_room",
    /// The alignment is not one of the named ones.
    UnknownAlign => "unknown_align",
    /// The offset is malformed or too large.
    InvalidOffset => "invalid_offset",
    /// The shadow style is not one of the named ones.
    UnknownShadowStyle => "unknown_shadow_style",
    /// A shadow direction, opacity or softness is out of range.
    ShadowOutOfRange => "shadow_out_of_range",
    /// The reflection opacity is outside [0, 1].
    ReflectionOutOfRange => "reflection_out_of_range",
    /// The backdrop is not transparent or a #RRGGBB colour, or the format cannot carry it.
    InvalidBackdrop => "invalid_backdrop",
    // --- input images ---
    /// The input could not be read (missing file, failed download).
    InputUnreadable => "input_unreadable",
    /// The input file is larger than allowed.
    FileTooLarge => "file_too_large",
    /// The input image's width or height is over the limit.
    DimensionsTooLarge => "dimensions_too_large",
    /// The input image's width or height is under the minimum.
    DimensionsTooSmall => "dimensions_too_small",
    /// The input image has more pixels than allowed.
    TooManyPixels => "too_many_pixels",
    /// The input is not a PNG, JPEG or WebP image.
    UnsupportedFormat => "unsupported_format",
    /// The input claims a supported format but cannot be decoded.
    CorruptImage => "corrupt_image",
    /// A background job's input has no alpha channel.
    NoAlphaChannel => "no_alpha_channel",
    /// A background job's input has no transparent area to fill.
    FullyOpaque => "fully_opaque",
    /// A background job's input has no opaque foreground.
    FullyTransparent => "fully_transparent",
    // --- automatic cut-out ---
    /// Segmentation found no object in the photo (the mask is empty or covers it all).
    NoObjectFound => "no_object_found",
    // --- running ---
    /// The task was canceled.
    Canceled => "canceled",
    /// The engine failed.
    EngineFailed => "engine_failed",
    /// Writing a result failed.
    OutputFailed => "output_failed",
    /// The service could not start or reach its database or storage.
    ServiceFailed => "service_failed",
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_snake_case() {
        let mut seen = HashSet::new();
        for code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "duplicate code {s}");
            assert!(s.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{s} is not snake_case");
        }
    }
}
