//! The one reader of submit bodies, shared by the native API and the vendor surfaces:
//! the request-body half of the surface kit ([`crate::service`] holds the image source
//! and the dimension probe).
//!
//! A body is read under the router's limit (`[limits] max_body_bytes`) into either JSON
//! bytes, kept unparsed until the route parses them straight into its typed request (no
//! `serde_json::Value` tree, whose size can be many times the body's), or form fields:
//! multipart text fields and files, or a url-encoded form. Every refusal is an
//! [`ApiError`] with its code, which each surface re-answers in its own envelope.

use crate::error::ApiError;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::header;
use backdrop_core::ErrorCode;
use bytes::Bytes;

/// A submit body, read but not yet interpreted.
#[derive(Debug)]
pub enum SubmitBody {
    /// A JSON body (`application/json`, or no content type), not empty.
    Json(Bytes),
    /// Form fields: multipart, or `application/x-www-form-urlencoded`.
    Form(FormFields),
}

/// The fields of a form body, in the order sent.
#[derive(Debug, Default)]
pub struct FormFields {
    /// Text fields by name.
    pub text: Vec<(String, String)>,
    /// Uploaded files by field name.
    pub files: Vec<(String, Bytes)>,
}

impl FormFields {
    /// Takes the first file sent under `name`.
    pub fn take_file(&mut self, name: &str) -> Option<Bytes> {
        let at = self.files.iter().position(|(n, _)| n == name)?;
        Some(self.files.remove(at).1)
    }
}

impl SubmitBody {
    /// Reads a body. A multipart field is a file when it carries a file name or is one
    /// of `file_fields` (clients that send an image part without a file name).
    pub async fn read(req: Request, file_fields: &[&str]) -> Result<Self, ApiError> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        if content_type.starts_with("multipart/form-data") {
            let mut multipart = Multipart::from_request(req, &())
                .await
                .map_err(|e| ApiError::new(ErrorCode::InvalidMultipart, e.body_text()))?;
            let mut form = FormFields::default();
            while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
                let name = field.name().unwrap_or_default().to_string();
                let is_file = field.file_name().is_some() || file_fields.contains(&name.as_str());
                let bytes = field.bytes().await.map_err(multipart_error)?;
                if is_file {
                    form.files.push((name, bytes));
                } else {
                    let text = String::from_utf8(bytes.to_vec()).map_err(|_| {
                        ApiError::new(
                            ErrorCode::InvalidMultipart,
                            format!("the field {name} is not UTF-8 text"),
                        )
                    })?;
                    form.text.push((name, text));
                }
            }
            Ok(SubmitBody::Form(form))
        } else if content_type.starts_with("application/x-www-form-urlencoded") {
            let body = read_bytes(req).await?;
            let text = url::form_urlencoded::parse(&body).into_owned().collect();
            Ok(SubmitBody::Form(FormFields { text, files: Vec::new() }))
        } else if content_type.starts_with("application/json") || content_type.is_empty() {
            let body = read_bytes(req).await?;
            if body.iter().all(u8::is_ascii_whitespace) {
                return Err(ApiError::new(ErrorCode::InvalidJson, "the body is empty"));
            }
            Ok(SubmitBody::Json(body))
        } else {
            Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                format!(
                    "content type '{content_type}' is not accepted; send application/json, \
                     multipart/form-data or a url-encoded form"
                ),
            ))
        }
    }
}

/// The whole body as bytes, under the router's limit.
pub async fn read_bytes(req: Request) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, &())
        .await
        .map_err(|e| ApiError::body_rejection(e.status(), e.body_text()))
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    match ApiError::body_rejection(e.status(), e.body_text()) {
        too_large @ ApiError { code: ErrorCode::BodyTooLarge, .. } => too_large,
        other => ApiError { code: ErrorCode::InvalidMultipart, ..other },
    }
}
