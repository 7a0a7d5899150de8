//! Stable error codes.
//!
//! Every error Backdrop reports carries one [`ErrorCode`]: the core's job and input
//! codes, the fetcher's download codes, the store's and the server's request codes, and
//! the command line's configuration and set-up codes, all in this one enum. The string
//! form ([`ErrorCode::as_str`]) is part of the public contract: it is printed by the
//! command line, returned by the API and persisted with failed tasks (read back with
//! [`ErrorCode::parse`]), so a code is never renamed once released. Each code has the
//! HTTP status the native API answers it with ([`ErrorCode::http_status`]); vendor
//! surfaces map codes to their own values, matching on this enum.

use std::fmt;

macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident => $text:literal, $status:literal,)*) => {
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

            /// The HTTP status the native API answers this code with.
            pub fn http_status(self) -> u16 {
                match self {
                    $(ErrorCode::$variant => $status,)*
                }
            }

            /// The code of its wire form; `None` for a text that is no code.
            pub fn parse(text: &str) -> Option<ErrorCode> {
                match text {
                    $($text => Some(ErrorCode::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

error_codes! {
    // --- job parameters ---
    /// A background job needs a prompt or a scene id.
    PromptOrSceneRequired => "prompt_or_scene_required", 400,
    /// The prompt is longer than allowed.
    PromptTooLong => "prompt_too_long", 400,
    /// The negative prompt is longer than allowed.
    NegativePromptTooLong => "negative_prompt_too_long", 400,
    /// The scene id is not in the catalogue.
    UnknownScene => "unknown_scene", 400,
    /// The number of images asked for is out of range.
    ImageCountOutOfRange => "image_count_out_of_range", 400,
    /// The requested output size is out of range.
    OutputSizeOutOfRange => "output_size_out_of_range", 400,
    /// The number of steps is out of range.
    StepsOutOfRange => "steps_out_of_range", 400,
    /// The guidance scale is not a number or out of range.
    GuidanceOutOfRange => "guidance_out_of_range", 400,
    /// The scheduler name is not one the diffusion engine implements.
    UnknownScheduler => "unknown_scheduler", 400,
    /// A model id is malformed.
    InvalidModelId => "invalid_model_id", 400,
    /// A LoRA name is malformed or its weight out of range.
    InvalidLora => "invalid_lora", 400,
    /// The reference image strength is outside [0, 1].
    ReferenceStrengthOutOfRange => "reference_strength_out_of_range", 400,
    /// An expansion ratio is outside [0, 2] or not a number.
    RatioOutOfRange => "ratio_out_of_range", 400,
    /// The expanded canvas would be more than 3x the original's area.
    ExpansionAreaTooLarge => "expansion_area_too_large", 400,
    /// All four expansion ratios are zero.
    NothingToExpand => "nothing_to_expand", 400,
    /// The expanded canvas would exceed the maximum dimensions.
    CanvasTooLarge => "canvas_too_large", 400,
    /// The engine name is unknown or not available for this job.
    UnknownEngine => "unknown_engine", 400,
    // --- framing (placement, shadow, reflection, backdrop) ---
    /// The placement scale is outside (0, 1].
    ScaleOutOfRange => "scale_out_of_range", 400,
    /// A padding value is malformed or negative.
    InvalidPadding => "invalid_padding", 400,
    /// The padding leaves no room for the product.
    PaddingLeavesNoRoom => "padding_leaves_no_room", 400,
    /// The alignment is not one of the named ones.
    UnknownAlign => "unknown_align", 400,
    /// The offset is malformed or too large.
    InvalidOffset => "invalid_offset", 400,
    /// The shadow style is not one of the named ones.
    UnknownShadowStyle => "unknown_shadow_style", 400,
    /// A shadow direction, opacity or softness is out of range.
    ShadowOutOfRange => "shadow_out_of_range", 400,
    /// The reflection opacity is outside [0, 1].
    ReflectionOutOfRange => "reflection_out_of_range", 400,
    /// The backdrop is not transparent or a #RRGGBB colour, or the format cannot carry it.
    InvalidBackdrop => "invalid_backdrop", 400,
    // --- input images ---
    /// The input could not be read (missing file, failed download).
    InputUnreadable => "input_unreadable", 400,
    /// The input file is larger than allowed.
    FileTooLarge => "file_too_large", 413,
    /// The input image's width or height is over the limit.
    DimensionsTooLarge => "dimensions_too_large", 400,
    /// The input image's width or height is under the minimum.
    DimensionsTooSmall => "dimensions_too_small", 400,
    /// The input image has more pixels than allowed.
    TooManyPixels => "too_many_pixels", 400,
    /// The input is not a PNG, JPEG or WebP image.
    UnsupportedFormat => "unsupported_format", 400,
    /// The input claims a supported format but cannot be decoded.
    CorruptImage => "corrupt_image", 400,
    /// A background job's input has no alpha channel.
    NoAlphaChannel => "no_alpha_channel", 400,
    /// A background job's input has no transparent area to fill.
    FullyOpaque => "fully_opaque", 400,
    /// A background job's input has no opaque foreground.
    FullyTransparent => "fully_transparent", 400,
    // --- automatic cut-out ---
    /// Segmentation found no object in the photo (the mask is empty or covers it all).
    NoObjectFound => "no_object_found", 400,
    // --- running ---
    /// The task was canceled.
    Canceled => "canceled", 409,
    /// The engine failed.
    EngineFailed => "engine_failed", 500,
    /// Writing a result failed.
    OutputFailed => "output_failed", 500,
    /// The service could not start or reach its database or storage.
    ServiceFailed => "service_failed", 503,
    /// A task ended by the sweeper after its worker's lease lapsed too often.
    RetriesExhausted => "retries_exhausted", 500,
    // --- input images fetched from a URL (backdrop-fetch) ---
    /// The image URL does not parse.
    InvalidUrl => "invalid_url", 400,
    /// The image URL's scheme or address is not allowed (internal, loopback, non-http).
    UrlRefused => "url_refused", 400,
    /// The image could not be downloaded (name, connection or HTTP status).
    DownloadFailed => "download_failed", 400,
    /// The image URL redirected too often.
    TooManyRedirects => "too_many_redirects", 400,
    /// The downloaded image is larger than allowed.
    DownloadTooLarge => "download_too_large", 400,
    /// The download took longer than allowed.
    DownloadTimeout => "download_timeout", 400,
    /// The downloaded file is not a PNG, JPEG or WebP image.
    NotAnImage => "not_an_image", 400,
    // --- requests (server) ---
    /// The request body is not JSON, not an object, or empty.
    InvalidJson => "invalid_json", 400,
    /// A field has the wrong type, is unknown, or its value is refused.
    InvalidParameter => "invalid_parameter", 400,
    /// The request body could not be read.
    InvalidBody => "invalid_body", 400,
    /// A multipart body is malformed.
    InvalidMultipart => "invalid_multipart", 400,
    /// The body's media type is not one the route accepts.
    UnsupportedMediaType => "unsupported_media_type", 415,
    /// A submit names no input image.
    ImageRequired => "image_required", 400,
    /// An image given as base64 does not decode.
    InvalidBase64 => "invalid_base64", 400,
    /// An idempotency key is empty or too long.
    InvalidIdempotencyKey => "invalid_idempotency_key", 400,
    /// A callback URL is not an absolute http(s) URL.
    InvalidCallbackUrl => "invalid_callback_url", 400,
    /// A list cursor is not one the API gave.
    InvalidCursor => "invalid_cursor", 400,
    /// The task's estimated memory is over the server's per-task limit.
    TaskTooLarge => "task_too_large", 400,
    /// No key, or an unknown, revoked or badly signed one.
    Unauthorized => "unauthorized", 401,
    /// The key's balance does not cover the task.
    InsufficientCredits => "insufficient_credits", 402,
    /// The key may not see this.
    Forbidden => "forbidden", 403,
    /// No such route, task or file.
    NotFound => "not_found", 404,
    /// The route exists with other methods.
    MethodNotAllowed => "method_not_allowed", 405,
    /// The task has already ended (it cannot be canceled).
    TaskFinished => "task_finished", 409,
    /// The request did not complete within the server's time limit.
    RequestTimeout => "request_timeout", 408,
    /// A signed file link has expired.
    LinkExpired => "link_expired", 410,
    /// The request body is larger than the server's limit.
    BodyTooLarge => "body_too_large", 413,
    /// The key submits faster than its rate.
    RateLimited => "rate_limited", 429,
    /// The key has as many tasks queued as it may.
    QueueFull => "queue_full", 429,
    /// The key has as many tasks running as it may.
    ConcurrencyLimit => "concurrency_limit", 429,
    /// The key holds as many event streams or synchronous waits as it may.
    TooManyStreams => "too_many_streams", 429,
    /// An error inside the server; its detail is in the log.
    Internal => "internal", 500,
    /// The database or the blob store does not answer.
    NotReady => "not_ready", 503,
    // --- configuration and set-up (command line, server start) ---
    /// The configuration file or environment is invalid.
    InvalidConfig => "invalid_config", 400,
    /// An engine or model could not be set up (runtime library, weights, folder).
    EngineSetupFailed => "engine_setup_failed", 500,
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        ErrorCode::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown error code '{text}'")))
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
            assert!(
                s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{s} is not snake_case"
            );
        }
    }

    #[test]
    fn every_code_parses_back_and_has_an_error_status() {
        for &code in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
            let json = serde_json::to_string(&code).expect("serializes");
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).expect("parses"), code);
            assert!((400..600).contains(&code.http_status()), "{code}");
        }
        assert_eq!(ErrorCode::parse("no_such_code"), None);
        assert!(serde_json::from_str::<ErrorCode>("\"no_such_code\"").is_err());
    }
}
